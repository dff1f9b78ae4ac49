#!/usr/bin/env bash
# Prepared GPU check, sized for one H100 in under 8 minutes (see benchmarks/gpu_check.py):
# FGSM-RS fast adversarial training of a PreAct ResNet-18 on cifar10-jpeg75, time to 45%
# PGD-20 robustness, class-wise clean and PGD-20 accuracy, one PGD-10 AT epoch of ResNet-18;
# then the scale phases (benchmarks/gpu_check_scale.py): synthetic-JPEG streaming throughput,
# the compaction speed-up on CUDA (bench_compaction.py when present), a torchrun sharded-evaluation
# smoke. `--phases streaming,compaction,sharded` skips the CIFAR phases (and needs no CIFAR data).
#
# Runs from source (PYTHONPATH=src), needs no network. The ImageFolder tree is extracted
# into the ignored folder .data/ if missing, from the first tarball found among
# $CIFAR_TAR, .data/cifar10-jpeg75.tar.gz, shared/data/, ../shared/data/.
# Results: $OUT/gpu_check.json and $OUT/gpu_check.log (OUT defaults to runs/gpu_check).
# Extra arguments go to gpu_check.py, e.g. `benchmarks/gpu_check.sh --compile` or `--smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:-runs/gpu_check}"
PY="${PYTHON:-python3}"
mkdir -p .data "$OUT_DIR"

need_cifar=1
case " $* " in *" --phases"*) case " $* " in *cifar*) ;; *) need_cifar=0 ;; esac ;; esac

if [ "$need_cifar" = 1 ] && [ ! -d .data/cifar10-jpeg75/train ]; then
  for tarball in "${CIFAR_TAR:-}" .data/cifar10-jpeg75.tar.gz shared/data/cifar10-jpeg75.tar.gz \
                 ../shared/data/cifar10-jpeg75.tar.gz; do
    if [ -n "$tarball" ] && [ -f "$tarball" ]; then
      echo "extracting $tarball into .data/"
      tar -xzf "$tarball" -C .data
      break
    fi
  done
fi
[ "$need_cifar" = 0 ] || [ -d .data/cifar10-jpeg75/train ] || { echo "cifar10-jpeg75 not found: set CIFAR_TAR" >&2; exit 2; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  | tee "$OUT_DIR/gpu_check.log"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT_DIR/gpu_check.log"
"$PY" benchmarks/gpu_check.py --data-root .data/cifar10-jpeg75 --out "$OUT_DIR" "$@" 2>&1 | tee -a "$OUT_DIR/gpu_check.log"
