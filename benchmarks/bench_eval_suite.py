"""The evaluation suite with and without the cascade (attack only examples still robust).

``classwise.evaluate.evaluate`` runs every attack on every clean-correct
example and judges each attack on its own; ``evaluate(..., cascade=True)`` runs the
attacks in order, each only on examples that survived the previous ones (as
AutoAttack does), and reports the worst case. This script times both on the
same model and test images (interleaved repetitions, medians) and prints the
speed-up and the robust accuracies (per attack alone, cumulative in the
cascade, worst case).

Model: ``--run DIR`` evaluates a classwise run folder's last checkpoint on its
test set; without it, ``--model`` is trained briefly (standard training, Adam)
on the embedded mnist5k sample, which is partly robust at the default eps 0.1.

Example (CPU, about a minute and a half):
    python benchmarks/bench_eval_suite.py --model smallcnn --examples 300 --eps 0.1 --attacks fgsm,pgd20,cw-margin
"""

from __future__ import annotations

import json

import numpy as np
import torch

from _common import eval_model, eval_parser, machine, setup, time_interleaved
from classwise.evaluate import WORST, evaluate


def attacked_counts(alone, cascade, specs: list[str]) -> dict[str, tuple[int, int]]:
    """Per attack: examples it ran on alone (clean-correct) and in the cascade (still robust)."""
    clean_ok = int(alone.correct().sum())
    before = [None, *specs[:-1]]
    return {a: (clean_ok, int(cascade.correct(b).sum())) for a, b in zip(specs, before)}


def main() -> None:
    p = eval_parser(__doc__.splitlines()[0], eps=0.1, examples=300)
    p.add_argument("--attacks", default="fgsm,pgd20,cw-margin", help="comma-separated registry specs, cheap first")
    args = p.parse_args()
    device = setup(args)
    model, x, y = eval_model(args, device)
    specs = [s.strip() for s in args.attacks.split(",") if s.strip()]
    kw = dict(eps=args.eps, batch_size=args.batch_size, device=device, seed=args.seed, progress=False)
    results = {}

    def run(cascade, key):
        return lambda: results.__setitem__(key, evaluate(model, x, y, specs, cascade=cascade, **kw))

    times = time_interleaved({"evaluate (each attack alone)": run(False, "alone"),
                              "evaluate(cascade=True)": run(True, "cascade")},
                             args.reps, device, warmup=0)
    report(args, device, times, results, specs)


def report(args, device: torch.device, times: dict, results: dict, specs: list[str]) -> None:
    """Print the timing table and the accuracies; optionally write JSON."""
    alone, cascade = results["alone"], results["cascade"]
    (t_alone, t_cascade) = times.values()
    print(f"{machine(device)}; model {args.run or args.model}, {len(alone.labels)} examples, "
          f"eps {args.eps}, attacks {', '.join(specs)}, reps {args.reps}")
    print("\n| evaluation | s (median) | ratio to evaluate |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t:.2f} | {t / t_alone:.3f} |")
    acc = {"clean": 100 * alone.correct().mean()}
    acc |= {f"{a} alone": 100 * alone.correct(a).mean() for a in specs}
    acc |= {f"{a} cascade (cumulative)": 100 * cascade.correct(a).mean() for a in specs}
    acc["worst case (cascade)"] = 100 * cascade.correct(WORST).mean()
    acc["worst case (per example, attacks alone)"] = 100 * np.logical_and.reduce([alone.correct(a) for a in specs]).mean()
    print("\n| accuracy | % |\n|---|---:|")
    for name, value in acc.items():
        print(f"| {name} | {value:.1f} |")
    attacked = attacked_counts(alone, cascade, specs)
    print("\n| attack | examples attacked alone | in the cascade |\n|---|---:|---:|")
    for name, (n_alone, n_cascade) in attacked.items():
        print(f"| {name} | {n_alone} | {n_cascade} |")
    print(f"\nspeed-up of the cascade: {t_alone / t_cascade:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), "seconds": times, "accuracy": acc,
                       "attacked": attacked}, f, indent=1)


if __name__ == "__main__":
    main()
