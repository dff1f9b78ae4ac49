"""Time per PGD step against its bound: one forward + one input-gradient backward.

Every PGD step needs one forward pass and one backward pass to the input, so
``input_grad`` on the same model and batch is a lower bound on the time per
step. This script reports, per step (time of K steps over K; equally long
timed units see the same share of a shared CPU's contention):

- bound: K calls of ``input_grad`` (forward + backward to the input, summed
  CE), eval mode, back to back;
- ours: ``classwise`` PGD-K with keep_best=True (evaluation; it also does one
  extra forward to check the clean image; compaction off, ``compact_every=0``,
  so every step sees the whole batch: ``bench_compaction.py`` measures what
  dropping fooled examples saves), the same with ``clean_correct=True``
  (how ``evaluate()`` calls it: only clean-correct examples are attacked, so
  the check is skipped) and keep_best=False (training: nothing but K steps);
- torchattacks: ``torchattacks.PGD`` with the same eps, step and K, if installed.

Example (CPU, about a minute):
    python benchmarks/bench_pgd_step.py --model resnet18 --batch-size 16 --steps 10
"""

from __future__ import annotations

import json

import torch

from _common import machine, pgd_parser, print_table, time_on_random_batch
from classwise.attacks import PGD, LinfThreat, cross_entropy, input_grad


def candidates(model, x, y, steps: int, eps: float) -> dict:
    """name -> zero-argument callable running K steps (bound: K input gradients back to back)."""
    threat = LinfThreat(eps, 2.5 * eps / steps)
    gen = torch.Generator(x.device)
    ours = PGD(model, threat, steps=steps, compact_every=0)  # the cost of a full-batch step
    ours_train = PGD(model, threat, steps=steps, keep_best=False)
    out = {
        "bound: forward + input-grad backward": lambda: [input_grad(model, x, y, cross_entropy) for _ in range(steps)],
        "classwise PGD (keep_best=True)": lambda: ours(x, y, gen.manual_seed(0)),
        "classwise PGD (keep_best=True, clean_correct=True: as evaluate() calls it)":
            lambda: ours(x, y, gen.manual_seed(0), clean_correct=True),
        "classwise PGD (keep_best=False)": lambda: ours_train(x, y, gen.manual_seed(0)),
    }
    try:
        import torchattacks
    except ImportError:
        return out
    theirs = torchattacks.PGD(model, eps=eps, alpha=threat.step_size, steps=steps, random_start=True)
    out["torchattacks.PGD"] = lambda: theirs(x, y)
    return out


def main() -> None:
    args = pgd_parser(__doc__.splitlines()[0], "PGD steps K").parse_args()
    device, times = time_on_random_batch(args, candidates)
    per_step = {k: t / args.steps for k, t in times.items()}
    bound = next(iter(per_step.values()))
    rows = [(k, 1e3 * t, t / bound) for k, t in per_step.items()]
    print(f"{machine(device)}; model {args.model}, batch {args.batch_size}, PGD-{args.steps}, reps {args.reps}")
    print_table("Time per PGD step (median of interleaved repetitions)", rows)
    if "torchattacks.PGD" in per_step:
        ratio = per_step["classwise PGD (keep_best=True)"] / per_step["torchattacks.PGD"]
        print(f"\nclasswise PGD (keep_best=True) / torchattacks.PGD: {ratio:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args),
                       "ms_per_step": {k: 1e3 * t for k, t in per_step.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
