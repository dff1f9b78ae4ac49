"""Time of one PGD-K adversarial-training step against its bound.

A PGD-K adversarial-training step (Madry et al.) needs K forward + input-grad
backward passes (the attack, model in eval mode) and one forward + full
backward + optimiser step on the adversarial batch (model in train mode).
The bound runs exactly those passes, back to back, as one timed unit:

    bound = K x (forward + input-grad backward) + (forward + backward + SGD step)

(one unit rather than separately timed parts, so that both sides last as long
and see the same share of a shared CPU's contention).

The candidate is the library's training step: the "pgd-at" objective of
``classwise.train.objectives`` (as the Trainer calls it), then zero_grad,
backward and the optimiser step.

Example (CPU, about a minute):
    python benchmarks/bench_adv_train_step.py --model resnet18 --batch-size 16 --steps 10
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from _common import machine, pgd_parser, print_table, time_on_random_batch
from classwise.attacks import cross_entropy, input_grad
from classwise.config import AttackConfig, TrainConfig
from classwise.train.objectives import create_objective


def sgd_step(model, optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def candidates(model, x, y, steps: int, eps: float) -> dict:
    """name -> zero-argument callable: the bound's passes, then the library's step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    cfg = TrainConfig(method="pgd-at", attack=AttackConfig(f"pgd{steps}", eps, 2.5 * eps / steps))
    objective = create_objective(cfg)
    gen = torch.Generator(x.device)

    def bound() -> None:
        for _ in range(steps):
            input_grad(model.eval(), x, y, cross_entropy)
        sgd_step(model.train(), optimizer, F.cross_entropy(model(x), y))

    def adv_step() -> None:
        loss, _ = objective(model.train(), x, y, eps, gen.manual_seed(0))
        sgd_step(model, optimizer, loss)

    return {f"bound: {steps} x (forward + input-grad backward) + (forward + backward + SGD step)": bound,
            f"classwise pgd-at step (PGD-{steps})": adv_step}


def main() -> None:
    args = pgd_parser(__doc__.splitlines()[0], "PGD steps K of the training attack").parse_args()
    device, times = time_on_random_batch(args, candidates)
    bound = next(iter(times.values()))
    rows = [(k, 1e3 * t, t / bound) for k, t in times.items()]
    print(f"{machine(device)}; model {args.model}, batch {args.batch_size}, PGD-{args.steps}, reps {args.reps}")
    print_table("One adversarial-training step (median of interleaved repetitions)", rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), "ms": {r[0]: r[1] for r in rows}}, f, indent=1)


if __name__ == "__main__":
    main()
