"""The CPU-budget fairness runs of docs/fairness.md: a baseline and each robust-fairness method, one seed.

For one dataset and one seed, trains ``trades`` (the baseline) and ``frl``, ``dafa``,
``wat``, ``cfa`` with the same CPU-sized recipe through the command line
(``classwise train`` then ``classwise evaluate``), each into WORK/runs_<tag>/<method>-s<seed>,
and after every run packs the run folders into
OUT/fair_<tag>.tgz, the evaluated checkpoint kept (what ``experiments/fairness_table.py --group`` reads once
unpacked). The dataset is decoded once per process and handed to every run (the
registry's ``load_data`` is wrapped by a cache keyed by its arguments); each run is
otherwise exactly the CLI's.

Recipes (both sized to the CPU presets they start from; docs/fairness.md states their cost):

* ``cifar``: preset cifar10-cpu (FastCNN 48-96-192, SGD, cyclic lr peaking at 0.2, crop+flip)
  with TRADES (beta 6) for 2 epochs, its KL attack 3 steps of 7/255 within 8/255 (measured on
  2 CPU cores at 76 training images/s: about 21 minutes of training, inside the 25 the recipe
  is sized for; 3 epochs would be about 32); evaluation: the preset's FGSM, PGD-20 and
  ``strong`` on all 10,000 test images.
* ``mnist``: preset mnist-fast (SmallCNN, Adam, 3 epochs, eps 0.3 ramped over the first)
  with TRADES (beta 6), its KL attack 3 steps of 0.15; evaluation: FGSM, PGD-40, ``strong``
  on all 10,000 test images.

The fairness methods hold out 1,000 validation images (the default), use a DAFA warm-up of
about two thirds of the epochs (the reference: 70 of 110; here 1 of 2 on cifar, 2 of 3 on
mnist) and start CFA's calibration after epoch 1 (the reference: 10 of 200); CFA is evaluated
on its FAWA average when one was formed, else on its last weights (the log says which).

    PYTHONPATH=src python benchmarks/gpu_fairness.py --recipe cifar --data-root .data/cifar10-jpeg75 --seed 0 --out OUT
    PYTHONPATH=src python benchmarks/gpu_fairness.py --recipe mnist --data-root .data --smoke --out /tmp/f
"""

from __future__ import annotations

import argparse
import functools
import json
import tarfile
import time
from pathlib import Path

METHODS = ("trades", "frl", "dafa", "wat", "cfa")
FAIR = ["train.beta=6", "train.fair.cfa_begin=1"]
RECIPES = {
    "cifar": ("cifar10-cpu", ["train.epochs=2", "train.fair.dafa_warmup=1",
                              "train.attack={name: pgd3, eps: 8/255, step_size: 7/255}"]),
    "mnist": ("mnist-fast", ["train.fair.dafa_warmup=2", "train.attack={name: pgd3, eps: 0.3, step_size: 0.15}"]),
}
SMOKE = ["data.train_examples=1200", "train.epochs=3", "train.monitor_examples=50", "train.fair.val_examples=200",
         "eval.examples=50"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", type=Path, required=True, help="folder of the archive (and nothing else)")
    p.add_argument("--work", type=Path, default=Path("/tmp/classwise_fairness"), help="folder of the run folders")
    p.add_argument("--smoke", action="store_true", help="1,200 training and 50 test images (a code-path check)")
    return p.parse_args()


def cache_data() -> None:
    """Decode each dataset once in this process: every run gets the same bundle."""
    from classwise import runs

    runs.load_data = functools.cache(runs.load_data)


def one_run(args: argparse.Namespace, method: str, runs_dir: Path, log: dict) -> None:
    """Train and evaluate ``method``; its record (exit codes, seconds, checkpoint) goes into ``log``."""
    from classwise.cli import main

    preset, recipe = RECIPES[args.recipe]
    sets = [f"seed={args.seed}", f"train.method={method}", *recipe, *FAIR, *(SMOKE if args.smoke else [])]
    run = runs_dir / f"{method}-s{args.seed}"
    start = time.perf_counter()
    code = main(["train", preset, "--out", str(run), "--data-root", args.data_root, "-q",
                 *[x for s in sets for x in ("--set", s)]])
    rec = {"train_exit": code, "train_s": round(time.perf_counter() - start, 1)}
    if code == 0:
        from classwise.runs import Run

        checkpoint = "fawa" if method == "cfa" and "fawa" in Run.open(run).checkpoint_names() else "last"
        start = time.perf_counter()
        rec |= {"checkpoint": checkpoint, "evaluate_exit": main(["evaluate", str(run), "-q", "--checkpoint", checkpoint]),
                "evaluate_s": round(time.perf_counter() - start, 1)}
    log[run.name] = rec
    print(f"{run.name}: {rec}", flush=True)


def pack(runs_dir: Path, tgz: Path, log: dict) -> None:
    """The run folders as one archive: of the checkpoints only the evaluated one (the results are checked
    against it), no adversarial images, figures, HTML report or TensorBoard logs."""
    from classwise.runfiles import RunFiles  # the run folder's layout: where a named checkpoint lives

    skip = {"adv", "tensorboard", ".evaluation", "figures", "report.html"}
    keep = {str(RunFiles(runs_dir / run).checkpoint(rec.get("checkpoint", "last")).relative_to(runs_dir.parent))
            for run, rec in log.items()}

    def select(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if set(parts) & skip or ("checkpoints" in parts and info.isfile() and info.name not in keep):
            return None
        return info

    tmp = tgz.with_suffix(".part")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(runs_dir, arcname=runs_dir.name, filter=select)
    tmp.replace(tgz)


def main() -> None:
    args = parse_args()
    cache_data()
    tag = f"{args.recipe}_s{args.seed}"
    runs_dir = args.work / f"runs_{tag}"
    runs_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log: dict = {}
    for method in args.methods.split(","):
        one_run(args, method, runs_dir, log)
        (runs_dir / "fairness_runs.json").write_text(json.dumps(log, indent=1))
        pack(runs_dir, args.out / f"fair_{tag}.tgz", log)


if __name__ == "__main__":
    main()
