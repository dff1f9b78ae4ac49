"""Time of one PGD-K adversarial-training step against its bound.

A PGD-K adversarial-training step (Madry et al.) needs K forward + input-grad
backward passes (the attack, model in eval mode) and one forward + full
backward + optimiser step on the adversarial batch (model in train mode).
The bound runs exactly those passes, back to back, as one timed unit:

    bound = K x (forward + input-grad backward) + (forward + backward + SGD step)

(one unit rather than separately timed parts, so that both sides last as long
and see the same share of a shared CPU's contention).

The candidates are the library's training step: the "pgd-at" objective of
``classwise.train.objectives`` (as the Trainer calls it), then zero_grad,
backward and the optimiser step; and the Trainer's whole step on uint8 data
(index the batch on the device, crop-flip augmentation for 32x32 models,
uint8 to float, objective, optimiser and scheduler step, running loss and
accuracy sums), with the same weights.

Example (CPU, about a minute):
    python benchmarks/bench_adv_train_step.py --model resnet18 --batch-size 16 --steps 10
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import machine, pgd_parser, print_table, time_on_random_batch
from classwise.attacks import cross_entropy, input_grad
from classwise.config import AttackConfig, TrainConfig, load_config
from classwise.data import DataBundle
from classwise.train.loop import Trainer
from classwise.train.objectives import create_objective
from classwise.train.resume import EpochRun


def sgd_step(model, optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def candidates(model, x, y, steps: int, eps: float, model_name: str) -> dict:
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
            f"classwise pgd-at step (PGD-{steps})": adv_step,
            "classwise Trainer step (uint8 batch, augmentation, objective, SGD, sums)":
                trainer_step(model, model_name, x, y, steps, eps)}


def trainer_step(model, name: str, x: torch.Tensor, y: torch.Tensor, steps: int, eps: float):
    """The Trainer's ``_step`` on a uint8 copy of the batch, its model loaded with ``model``'s weights."""
    channels, size = x.shape[1], x.shape[-1]
    data = DataBundle("bench", (x * 255).round().to(torch.uint8), y, x[:1].to(torch.uint8), y[:1],
                      [str(k) for k in range(10)], mean=(0.0,) * channels, std=(1.0,) * channels,
                      augment="crop_flip" if size == 32 else "none")
    config = load_config(None, [f"model.name={name}", f"device={x.device}", "train.method=pgd-at",
                                f"train.attack={{name: pgd{steps}, eps: {eps}, step_size: {2.5 * eps / steps}}}",
                                f"train.batch_size={len(y)}", "train.optimizer=sgd", "train.lr=0.001",
                                "train.eps_warmup_epochs=0", "perf.channels_last=false"])  # as the bound's model
    trainer = Trainer(config, data, Path(tempfile.mkdtemp()), progress=False)
    trainer.module.load_state_dict(model.state_dict())
    xs, ys, idx = data.train_x.to(x.device), data.train_y.to(x.device), torch.arange(len(y), device=x.device)
    gens, run = trainer._generators(), EpochRun.fresh(x.device)
    trainer.model.train()
    def step() -> None:  # the loop's batch (augmentation of the uint8 images), then its step
        xb, yb = next(trainer._batches(xs, ys, idx, 0, 1, gens["data"]))
        trainer._step(xb, yb, gens, run, num_batches=1)
    return step


def main() -> None:
    args = pgd_parser(__doc__.splitlines()[0], "PGD steps K of the training attack").parse_args()
    device, times = time_on_random_batch(args, functools.partial(candidates, model_name=args.model))
    bound = next(iter(times.values()))
    rows = [(k, 1e3 * t, t / bound) for k, t in times.items()]
    print(f"{machine(device)}; model {args.model}, batch {args.batch_size}, PGD-{args.steps}, reps {args.reps}")
    print_table("One adversarial-training step (median of interleaved repetitions)", rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "args": vars(args), "ms": {r[0]: r[1] for r in rows}}, f, indent=1)


if __name__ == "__main__":
    main()
