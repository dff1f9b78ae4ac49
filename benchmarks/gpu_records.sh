#!/usr/bin/env bash
# The GPU runs behind docs/reproduction.md and docs/fairness.md's CPU-budget table, in one
# command sized for one H200 in under 9 minutes: four processes share the card.
#
#   1. experiments/reproduce.py --preset mnist-fast   (real MNIST, from .data/mnist-raw.tar.gz)
#   2. experiments/reproduce.py --preset cifar10-cpu  (cifar10-jpeg75, from .data/cifar10-jpeg75.tar.gz)
#   3-4. benchmarks/gpu_fairness.py --recipe cifar, seeds 0 and 1 (TRADES and the four fairness methods)
#
# The CPU recipes run unchanged on the GPU (the presets' attacks include `strong` on every test
# image); only the wall times differ, and the records say on which machine they were made.
# Each job has LIMIT seconds (default 480); whatever finished comes back as archives in OUT
# (default runs/gpu_records): record_<preset>.tgz (the record folder, the run logs),
# fair_cifar_s<seed>.tgz (the run folders), records.log. SMOKE=1: the same code paths on tiny
# budgets (reproduce.py --quick, gpu_fairness.py --smoke), for a check on any machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CLASSWISE_PROGRESS=0
OUT_DIR="${OUT:-runs/gpu_records}"
WORK="${WORK:-/tmp/classwise_records}"
LIMIT="${LIMIT:-480}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
mkdir -p .data "$OUT_DIR" "$WORK"
LOG="$OUT_DIR/records.log"
[ -d .data/cifar10-jpeg75/train ] || tar -xzf .data/cifar10-jpeg75.tar.gz -C .data
[ -d .data/MNIST/raw ] || tar -xzf .data/mnist-raw.tar.gz -C .data
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$LOG"

reproduce() {  # preset data-root
  local preset=$1 root=$2 quick=() start=$SECONDS
  [ "${SMOKE:-0}" = 1 ] && quick=(--quick)
  timeout "$LIMIT" "$PY" experiments/reproduce.py --preset "$preset" --data-root "$root" --device "$DEVICE" \
    --runs "$WORK/runs" --record "$WORK/records/$preset" "${quick[@]}" >"$WORK/reproduce_$preset.log" 2>&1
  echo "reproduce $preset: exit $? after $((SECONDS - start)) s" | tee -a "$LOG"
  mkdir -p "$WORK/records/$preset" && cp "$WORK/reproduce_$preset.log" "$WORK/records/$preset/"
  for run in "$WORK/runs/$preset"*; do  # the runs' logs (the record keeps their summaries)
    [ -f "$run/train.log" ] && cp "$run/train.log" "$WORK/records/$preset/$(basename "$run").train.log"
  done
  tar -czf "$OUT_DIR/record_$preset.tgz" -C "$WORK/records" "$preset"
}

fairness() {  # seed
  local start=$SECONDS smoke=()
  [ "${SMOKE:-0}" = 1 ] && smoke=(--smoke)
  timeout "$LIMIT" "$PY" benchmarks/gpu_fairness.py --recipe cifar --data-root .data/cifar10-jpeg75 --seed "$1" \
    --work "$WORK" --out "$OUT_DIR" "${smoke[@]}" >"$WORK/fairness_s$1.log" 2>&1
  echo "fairness cifar seed $1: exit $? after $((SECONDS - start)) s" | tee -a "$LOG"
  sed 's/^/  /' "$WORK/fairness_s$1.log" | tail -n 20 >>"$LOG"
}

reproduce mnist-fast .data &
reproduce cifar10-cpu .data/cifar10-jpeg75 &
fairness 0 &
fairness 1 &
wait
for f in "$WORK"/reproduce_*.log; do echo "== $f" >>"$LOG"; tail -n 30 "$f" >>"$LOG"; done
ls -la "$OUT_DIR" | tee -a "$LOG"
