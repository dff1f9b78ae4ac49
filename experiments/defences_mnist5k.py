"""PGD-AT against the class-wise defences of the paper's guidelines, on mnist5k.

Trains a SmallCNN on the embedded 5,000-image MNIST sample with PGD-AT, once
plain and once per defence (``train.weight_norm_penalty``,
``train.class_weight_gamma``, both), then attacks the 1,000 test images with
PGD-20 and prints average and worst-class robustness as a Markdown table
(docs/training.md). Quick CPU settings (minutes, not the paper's recipe):
Adam lr 1e-3, eps 0.3 warmed up over 2 epochs, PGD-5 training. ``--quick``: 2 epochs
per variant on 1,000 training images (the code path; the class weights start in epoch 2).

    python experiments/defences_mnist5k.py --epochs 4 --out runs/defences_mnist5k
    python experiments/defences_mnist5k.py --quick --out /tmp/defences
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _common import run_script

from classwise.analysis.classwise import classwise_accuracy
from classwise.config import load_config
from classwise.evaluate import evaluate
from classwise.pipeline import train_run
from classwise.runs import Run

VARIANTS = {
    "PGD-AT": [],
    "+ weight-norm penalty (lambda 1)": ["train.weight_norm_penalty=1.0"],
    "+ class weights (gamma 1)": ["train.class_weight_gamma=1.0"],
    "+ both": ["train.weight_norm_penalty=1.0", "train.class_weight_gamma=1.0"],
}


def quick_overrides(epochs: int, seed: int) -> list[str]:
    """The demo preset made cheaper: PGD-5 training, a small monitor."""
    return [f"seed={seed}", f"train.epochs={epochs}", "train.attack.name=pgd5", "train.attack.step_size=null",
            "train.monitor.name=pgd5", "train.monitor_examples=100"]


# --quick: 2 epochs (the first uses uniform class weights, docs/training.md), eps warmed up over the first,
# on 1,000 training images
QUICK = ("train.epochs=2", "train.eps_warmup_epochs=1", "data.train_examples=1000")


def run_variant(name: str, extra: list[str], args: argparse.Namespace) -> dict:
    """Train one variant, attack its last checkpoint with PGD-20; class-wise numbers in percent."""
    quick = list(QUICK) if args.quick else []
    config = load_config("demo", quick_overrides(args.epochs, args.seed) + quick + extra)
    folder = args.out / name.split(" (")[0].strip("+ ").replace(" ", "_").lower()
    start = time.perf_counter()
    train_run(config, folder, overwrite=True, progress=False)
    run = Run.open(folder)
    data, model = run.data(), run.model("last")
    res = evaluate(model, data.test_x, data.test_y, ("pgd20",), eps=0.3, class_names=data.class_names,
                   seed=args.seed, progress=False)
    clean = classwise_accuracy(res.labels, res.clean_pred, data.num_classes)
    robust = classwise_accuracy(res.labels, res.adv_pred["pgd20"], data.num_classes)
    norms = run.head_weight("last").detach().norm(dim=1).cpu().numpy()
    return {"variant": name, "clean": float(np.mean(res.labels == res.clean_pred) * 100),
            "robust": float(np.mean(res.labels == res.adv_pred["pgd20"]) * 100),
            "worst_robust": float(robust.min()), "worst_class": int(robust.argmin()),
            "per_class_robust": robust.round(1).tolist(), "per_class_clean": clean.round(1).tolist(),
            "norm_cv": float(norms.std() / norms.mean()), "minutes": (time.perf_counter() - start) / 60}


def markdown(rows: list[dict]) -> str:
    head = "| variant | clean % | PGD-20 robust % (avg) | worst class robust % (class) | head norm CV |\n"
    head += "|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['variant']} | {r['clean']:.1f} | {r['robust']:.1f} | {r['worst_robust']:.1f} ({r['worst_class']}) "
        f"| {r['norm_cv']:.3f} |\n" for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2 epochs per variant on 1,000 training images (the code path)")
    p.add_argument("--out", type=Path, default=Path("runs/defences_mnist5k"), help="output folder (one run per variant)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run_variant(name, extra, args) for name, extra in VARIANTS.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    run_script(main)
