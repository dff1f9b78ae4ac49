"""Evaluation PGD with compaction against torchattacks.PGD: same model, images, batch and steps.

An evaluation PGD of ``classwise`` keeps each example's first fooling image and
drops the example from the batch (every step on a CPU, every 4 on a GPU), so
its work follows the examples still robust; ``torchattacks.PGD`` runs every
step on every example and returns the last iterate. Both run through
``classwise.evaluate.evaluate`` (clean forward, attack on the clean-correct
examples, forward on the adversarial images; torchattacks as a user's own
attack), interleaved repetition by repetition, with ours also timed without
compaction (``compact_every=0``) to show where the time goes. Printed: the
time ratios, the rows each attack forwarded, and robust accuracy overall and
per class for each (ours keeps the first fooling iterate, torchattacks the
last, and their random starts differ, so per-class numbers agree up to that).

The model should be near 50% robust accuracy, where compaction has half the
examples to drop: by default SmallCNN trained ``--train-steps`` Adam steps
(standard training) on the embedded mnist5k sample, attacked at ``--eps``
0.18; ``--run DIR`` evaluates a classwise run folder's last checkpoint
instead (e.g. the demo's, at its eps 0.3).

Example (CPU, 1 thread, about two minutes):
    python benchmarks/bench_compaction.py
    python benchmarks/bench_compaction.py --run runs/demo --eps 0.3
"""

from __future__ import annotations

import json

import torch
from torch import nn

from _common import eval_model, eval_parser, machine, setup, time_interleaved
from classwise.attacks import PGD, LinfThreat
from classwise.evaluate import EvalOptions, evaluate


def counted(model: nn.Module) -> tuple[nn.Module, list[int]]:
    """``model`` with a hook adding each forward's batch size to the returned list."""
    rows: list[int] = []
    model.register_forward_pre_hook(lambda _, args: rows.append(len(args[0])))
    return model, rows


def candidates(model: nn.Module, eps: float, steps: int) -> dict[str, object]:
    """Name -> attack for ``evaluate``: ours with and without compaction, torchattacks.PGD."""
    import torchattacks

    threat = LinfThreat(eps, 2.5 * eps / steps)
    off = PGD(model, threat, steps, compact_every=0)
    theirs = torchattacks.PGD(model, eps=eps, alpha=threat.step_size, steps=steps, random_start=True)
    return {f"classwise PGD-{steps} (compaction)": PGD(model, threat, steps),
            f"classwise PGD-{steps} (compact_every=0)": off, f"torchattacks.PGD-{steps}": theirs}


def per_class(res, name: str) -> list[float]:
    """Robust accuracy (%) per class (K,) of attack ``name``."""
    ok = res.correct(name)
    return [round(100 * float(ok[res.labels == c].mean()), 1) for c in range(len(res.class_names))]


def main() -> None:
    p = eval_parser(__doc__.splitlines()[0], eps=0.18, examples=400)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    device = setup(args)
    model, x, y = eval_model(args, device)
    model, rows = counted(model)
    opts = EvalOptions(batch_size=args.batch_size, device=device, seed=args.seed, progress=False, zero_grad=False)
    results, forwarded = {}, {}

    def run(name: str, attack: object):
        def call() -> None:
            rows.clear()
            results[name] = evaluate(model, x, y, {name: attack}, eps=args.eps, options=opts)
            forwarded[name] = sum(rows)
        return call

    times = time_interleaved({k: run(k, a) for k, a in candidates(model, args.eps, args.steps).items()},
                             args.reps, device, warmup=0)
    report(args, device, times, results, forwarded)


def report(args, device: torch.device, times: dict, results: dict, forwarded: dict) -> None:
    """Print the timing table and the accuracies per class; optionally write JSON."""
    ours, _, theirs = times
    first = results[ours]
    acc = {k: {"overall": round(100 * float(r.correct(k).mean()), 1), "per_class": per_class(r, k)}
           for k, r in results.items()}
    print(f"{machine(device)}; model {args.run or args.model}, {len(first.labels)} examples, eps {args.eps}, "
          f"batch {args.batch_size}, reps {args.reps}; clean accuracy {100 * first.correct().mean():.1f}%")
    print("\n| evaluation | s (median) | time / torchattacks | images forwarded | robust % |\n|---|---:|---:|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t:.2f} | {t / times[theirs]:.3f} | {forwarded[name]} | {acc[name]['overall']:.1f} |")
    diff = max(abs(a - b) for a, b in zip(acc[ours]["per_class"], acc[theirs]["per_class"]))
    print("\n| class | " + " | ".join(acc) + " |\n|---|" + "---:|" * len(acc))
    for c in range(len(first.class_names)):
        print(f"| {first.class_names[c]} | " + " | ".join(f"{a['per_class'][c]:.1f}" for a in acc.values()) + " |")
    speedup = times[theirs] / times[ours]
    print(f"\nspeed-up over torchattacks.PGD: {speedup:.2f}x; largest per-class difference {diff:.1f} points")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), "seconds": times, "forwarded": forwarded,
                       "accuracy": acc, "speedup_vs_torchattacks": speedup, "max_class_diff": diff}, f, indent=1)


if __name__ == "__main__":
    main()
