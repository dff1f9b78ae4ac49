"""The ``strong`` cascade against the official APGD-CE + APGD-T and the protocol PGD: strength and cost.

Three evaluations of the same model on the same images, through
``classwise.evaluate.evaluate``, interleaved repetition by repetition in one
process: the official AutoAttack APGD-CE then APGD-T (100 steps, 9 targets;
``cascade=True``: APGD-T on the survivors only, as AutoAttack runs them),
our ``strong`` (its defaults, or ``--strong-steps/--targets/--target-steps/--restarts``)
and the protocol PGD (``--protocol``, default PGD-40 at step 2.5 eps / 40).
Printed: robust accuracy overall and per class, forward and input-gradient
passes (counted by ``evaluate``'s cost meter, the judging forward included),
seconds (process CPU seconds on a CPU, wall seconds after synchronisation on
a GPU), and per class the paired exact McNemar test of strong against the
official pair (Holm over classes, 5%): the contract is that no class has the
official pair finding significantly more adversarial examples, the overall
robust accuracy of strong is at most 0.5 points above the official pair's,
and strong spends at most a fifth of its gradient passes and seconds.

Images: a seeded random subset of ``--examples`` test images (an ImageFolder
test set is sorted by class, so the first N would be one class).

The model: by default SmallCNN trained ``--train-steps`` Adam steps (standard
training) on the embedded mnist5k sample, at ``--eps``; ``--run DIR``
evaluates a classwise run folder's last checkpoint (e.g. an adversarially
trained one, where PGD overstates robustness the most).

Example (CPU, 1 thread):
    python benchmarks/bench_strong.py --examples 200 --eps 0.15
    python benchmarks/bench_strong.py --run runs/demo --eps 0.3 --examples 1000
    python benchmarks/bench_strong.py --run runs/cifar --eps 0.0313725 --protocol pgd20 --examples 1000
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import nn

from _common import eval_model, eval_parser, machine, setup, time_interleaved
from classwise.analysis.stats import paired_classwise
from classwise.attacks import create_attack
from classwise.evaluate import EvalOptions, evaluate
from classwise.results import EvalResults, evaluation_cost

OFFICIAL, STRONG = "official APGD-CE + APGD-T", "classwise strong"


def per_class(res: EvalResults, key: str) -> list[float]:
    """Robust accuracy (%) per class (K,) under ``key``."""
    ok = res.correct(key)
    return [round(100 * float(ok[res.labels == c].mean()), 1) for c in range(len(res.class_names))]


def compare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, opts: EvalOptions, *,
            protocol: str = "pgd40", reps: int = 1, strong: dict[str, int] | None = None,
            official_steps: int = 100) -> dict:
    """Evaluate the official pair (``official_steps`` each), ``strong`` (kwargs ``strong``) and ``protocol``
    on (x, y), interleaved.

    x (N, C, H, W) in [0, 1], y (N,). Returns {"examples", "clean", "rows": {name: {"robust",
    "per_class", "forwards", "backwards", "backwards_per_example", "seconds"}}, "mcnemar": per class
    {"official_only", "strong_only", "p_holm", "official_significantly_stronger"}, "ratios"}.
    """
    results: dict[str, EvalResults] = {}

    def official() -> None:
        pair = {name: create_attack(name, model, eps, steps=official_steps) for name in ("apgd-ce", "apgd-t")}
        results[OFFICIAL] = evaluate(model, x, y, pair, cascade=True, options=opts)

    def ours(name: str, spec: str, **kwargs: int) -> Callable[[], None]:
        def call() -> None:
            results[name] = evaluate(model, x, y, {spec: create_attack(spec, model, eps, **kwargs)}, options=opts)
        return call

    times = time_interleaved({OFFICIAL: official, STRONG: ours(STRONG, "strong", **(strong or {})),
                              protocol: ours(protocol, protocol)}, reps, opts.device, warmup=0)
    return _tabulate(results, times)


def _tabulate(results: dict[str, EvalResults], times: dict[str, float]) -> dict:
    rows = {}
    for name, res in results.items():
        key = "worst" if name == OFFICIAL else res.attacks[0]
        cost = evaluation_cost(res)
        f, b = (sum(int(c[k]) for c in cost.values()) for k in ("forwards", "backwards"))
        rows[name] = {"robust": round(100 * float(res.correct(key).mean()), 2), "per_class": per_class(res, key),
                      "forwards": f, "backwards": b, "backwards_per_example": round(b / len(res.labels), 1),
                      "seconds": round(times[name], 2)}
    first, ours = results[OFFICIAL], results[STRONG]
    k = len(first.class_names)
    test = paired_classwise(first.labels, first.correct("worst"), ours.correct(ours.attacks[0]), k)
    # only_a: robust under the official pair, broken by strong; only_b: the reverse
    mcnemar = [{"official_only": int(test.only_b[c]), "strong_only": int(test.only_a[c]),
                "p_holm": float(test.p_holm[c]),
                "official_significantly_stronger": bool(test.significant[c] and test.only_b[c] > test.only_a[c])}
               for c in range(k)]
    ratios = {key: round(rows[STRONG][key] / max(rows[OFFICIAL][key], 1e-9), 3) for key in ("backwards", "seconds")}
    return {"examples": len(first.labels), "clean": round(100 * float(first.correct().mean()), 2),
            "class_names": list(first.class_names), "rows": rows, "mcnemar": mcnemar, "ratios": ratios,
            "contract": {"overall_gap": round(rows[STRONG]["robust"] - rows[OFFICIAL]["robust"], 2),
                         "no_class_significantly_weaker": not any(m["official_significantly_stronger"]
                                                                  for m in mcnemar),
                         "at_most_a_fifth": max(ratios.values()) <= 0.2}}


def print_table(out: dict) -> None:
    """Markdown tables of :func:`compare`'s result."""
    print("\n| evaluation | robust % | forward passes | gradient passes | per example | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in out["rows"].items():
        print(f"| {name} | {r['robust']:.1f} | {r['forwards']} | {r['backwards']} | {r['backwards_per_example']:.0f} "
              f"| {r['seconds']:.1f} |")
    names = list(out["rows"])
    print("\n| class | " + " | ".join(names) + " | official only / strong only | p (Holm) |")
    print("|---|" + "---:|" * (len(names) + 2))
    for c, cls in enumerate(out["class_names"]):
        m = out["mcnemar"][c]
        print(f"| {cls} | " + " | ".join(f"{out['rows'][n]['per_class'][c]:.1f}" for n in names)
              + f" | {m['official_only']} / {m['strong_only']} | {m['p_holm']:.3g} |")
    print(f"\nstrong / official: gradient passes {out['ratios']['backwards']:.3f}, seconds "
          f"{out['ratios']['seconds']:.3f}; contract: {out['contract']}")


def main() -> None:
    p = eval_parser(__doc__.splitlines()[0], eps=0.15, examples=200)
    p.add_argument("--steps", type=int, default=100,
                   help="APGD steps of the official pair, and of strong's phases unless given (100: the standard)")
    p.add_argument("--protocol", default="pgd40", help="the protocol attack (spec), e.g. pgd20@step=2/255")
    p.add_argument("--strong-steps", type=int, default=None, help="strong's APGD-CE steps (default: strong's)")
    p.add_argument("--targets", type=int, default=None, help="strong's target classes (default: strong's)")
    p.add_argument("--target-steps", type=int, default=None, help="strong's APGD-T steps (default: strong's)")
    p.add_argument("--restarts", type=int, default=None, help="strong's runs of its cascade (default: strong's)")
    p.set_defaults(reps=1)
    args = p.parse_args()
    device = setup(args)
    model, x, y = eval_model(args, device)
    opts = EvalOptions(batch_size=args.batch_size, device=device, seed=args.seed, progress=False, zero_grad=False)
    short = args.steps if args.steps != 100 else None  # a short smoke run shortens strong alike
    strong = {k: v for k, v in (("steps", args.strong_steps or short), ("targets", args.targets),
                                ("target_steps", args.target_steps or short), ("restarts", args.restarts))
              if v is not None}
    out = compare(model, x, y, args.eps, opts, protocol=args.protocol, reps=args.reps, strong=strong,
                  official_steps=args.steps)
    print(f"{machine(device)}; model {args.run or args.model}, {out['examples']} examples, eps {args.eps}, batch "
          f"{args.batch_size}, reps {args.reps}; clean accuracy {out['clean']:.1f}%")
    print_table(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), **out}, f, indent=1)


if __name__ == "__main__":
    main()
