"""The ``strong`` cascade against the official APGD-CE + APGD-T and the protocol PGD-40: strength and cost.

Three evaluations of the same model on the same images, through
``classwise.evaluate.evaluate``, interleaved repetition by repetition in one
process: the official AutoAttack APGD-CE then APGD-T (100 steps, 9 targets;
``cascade=True``: APGD-T on the survivors only, as AutoAttack runs them),
our ``strong`` (APGD-CE 100, then APGD-DLR-T 100 toward the top 3
runner-up classes, survivors only) and PGD-40 (step 2.5 eps / 40, random
start). Printed: robust accuracy overall and per class, forward and
input-gradient passes (counted by ``evaluate``'s cost meter, the judging
forward included) and CPU seconds (1 torch thread by default).

The model: by default SmallCNN trained ``--train-steps`` Adam steps (standard
training) on the embedded mnist5k sample, at ``--eps``; ``--run DIR``
evaluates a classwise run folder's last checkpoint (e.g. an adversarially
trained one, where PGD overstates robustness the most).

Example (CPU, 1 thread, a few minutes):
    python benchmarks/bench_strong.py --examples 200 --eps 0.15
    python benchmarks/bench_strong.py --run runs/demo --eps 0.3 --examples 200
"""

from __future__ import annotations

import json

import numpy as np

from _common import eval_model, eval_parser, machine, setup, time_interleaved
from classwise.attacks import create_attack
from classwise.evaluate import EvalOptions, evaluate
from classwise.results import evaluation_cost

OFFICIAL, STRONG, PGD = "official APGD-CE + APGD-T", "classwise strong", "PGD-40 (protocol)"


def per_class(res, name: str) -> list[float]:
    """Robust accuracy (%) per class (K,) of attack ``name``."""
    ok = res.correct(name)
    return [round(100 * float(ok[res.labels == c].mean()), 1) for c in range(len(res.class_names))]


def main() -> None:
    p = eval_parser(__doc__.splitlines()[0], eps=0.15, examples=200)
    p.add_argument("--steps", type=int, default=100, help="APGD iterations of every phase (100: the standard)")
    p.set_defaults(reps=1)
    args = p.parse_args()
    device = setup(args)
    model, x, y = eval_model(args, device)
    opts = EvalOptions(batch_size=args.batch_size, device=device, seed=args.seed, progress=False, zero_grad=False)
    results = {}

    def official() -> None:
        pair = {name: create_attack(name, model, args.eps, steps=args.steps) for name in ("apgd-ce", "apgd-t")}
        results[OFFICIAL] = evaluate(model, x, y, pair, cascade=True, options=opts)

    def ours(name: str, spec: str, **kwargs: int):
        def call() -> None:
            results[name] = evaluate(model, x, y, {spec: create_attack(spec, model, args.eps, **kwargs)}, options=opts)
        return call

    strong = ours(STRONG, "strong", steps=args.steps, target_steps=args.steps)
    times = time_interleaved({OFFICIAL: official, STRONG: strong, PGD: ours(PGD, "pgd40")},
                             args.reps, device, warmup=0)
    report(args, device, times, results)


def _summary(name: str, res) -> tuple[str, dict]:
    """The result column of ``name`` and its cost totals (the official pair: both attacks summed)."""
    key = "worst" if name == OFFICIAL else res.attacks[0]
    cost = evaluation_cost(res)
    total = {k: sum(c[k] for c in cost.values()) for k in ("forwards", "backwards")}
    return key, total


def report(args, device, times: dict, results: dict) -> None:
    """Print robust accuracy, passes and CPU seconds, then per class; optionally write JSON."""
    first = results[OFFICIAL]
    n = len(first.labels)
    print(f"{machine(device)}; model {args.run or args.model}, {n} examples, eps {args.eps}, batch "
          f"{args.batch_size}, reps {args.reps}; clean accuracy {100 * first.correct().mean():.1f}%")
    print("\n| evaluation | robust % | forward passes | gradient passes | per example | CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows, acc = {}, {}
    for name, res in results.items():
        key, total = _summary(name, res)
        acc[name] = {"overall": round(100 * float(res.correct(key).mean()), 1), "per_class": per_class(res, key)}
        rows[name] = total | {"seconds": times[name]}
        print(f"| {name} | {acc[name]['overall']:.1f} | {total['forwards']} | {total['backwards']} | "
              f"{total['backwards'] / n:.0f} | {times[name]:.1f} |")
    print("\n| class | " + " | ".join(acc) + " |\n|---|" + "---:|" * len(acc))
    for c in range(len(first.class_names)):
        print(f"| {first.class_names[c]} | " + " | ".join(f"{a['per_class'][c]:.1f}" for a in acc.values()) + " |")
    gap = np.subtract(acc[STRONG]["per_class"], acc[OFFICIAL]["per_class"])
    print(f"\nstrong - official per class: max {gap.max():+.1f}, min {gap.min():+.1f} points; gradient passes "
          f"{rows[STRONG]['backwards'] / rows[OFFICIAL]['backwards']:.2f} of the official pair's")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), "cost": rows, "accuracy": acc}, f, indent=1)


if __name__ == "__main__":
    main()
