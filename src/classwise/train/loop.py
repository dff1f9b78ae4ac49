"""The training loop: epochs of an objective, class-wise metrics every epoch.

Data stays on the device as uint8 (N, C, H, W); each batch is augmented on
tensors and turned into [0, 1] floats. After every epoch the model's class-wise
clean accuracy and class-wise robustness under the monitor attack are logged
(figure 1 of the paper) and the checkpoint is written atomically.
Randomness is seeded per epoch, so resuming at an epoch boundary replays the
same data order, augmentation and attack noise.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..analysis import accuracy_block
from ..config import RunConfig, TrainConfig
from ..data import DataBundle, as_float, class_balanced_indices
from ..fileio import atomic_write
from ..evaluate import build_attack, evaluate, resolve_device
from ..models import create_model, use_he_head
from ..perf import autocast, prepare_input, prepare_model
from ..progress import progress_task
from ..runs import append_jsonl, read_jsonl
from .augment import AUGMENTATIONS
from .checkpoint import load_model, load_state, save_model, save_state
from .objectives import create_objective
from .schedules import make_optimizer, make_scheduler, per_batch, warmup_eps


def build_model(config: RunConfig, data: DataBundle) -> nn.Module:
    """The configured model for ``data`` (classes, channels, size, normalisation, head)."""
    model = create_model(
        config.model.name, num_classes=data.num_classes, in_channels=data.in_channels,
        image_size=data.image_size, mean=data.mean, std=data.std, **config.model.kwargs,
    )
    head = config.model.head
    return use_he_head(model, head.scale, head.margin) if head.name == "he" else model


def model_meta(config: RunConfig, data: DataBundle, epoch: int) -> dict:
    """What a checkpoint needs to rebuild its model without the config."""
    return {
        "model": config.model.name, "kwargs": config.model.kwargs, "head": dataclasses.asdict(config.model.head),
        "dataset": data.name,
        "num_classes": data.num_classes, "in_channels": data.in_channels, "image_size": data.image_size,
        "mean": list(data.mean), "std": list(data.std), "class_names": data.class_names, "epoch": epoch,
    }


@dataclass
class Trainer:
    """Owns model, optimiser and schedule of one run; ``fit`` trains to the last epoch."""

    config: RunConfig
    data: DataBundle
    run_dir: Path
    progress: bool = True

    def __post_init__(self) -> None:
        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)  # the initial weights follow the run's seed
        self.model = prepare_model(build_model(self.config, self.data).to(self.device), self.config.perf)
        self.optimizer = make_optimizer(self.config.train, self.model)
        steps = max(1, len(self.data.train_y) // self.config.train.batch_size)  # as _train_epoch
        self.scheduler = make_scheduler(self.config.train, self.optimizer, steps)
        self.per_batch = per_batch(self.config.train)
        self.objective = create_objective(self.config.train)
        self.epoch = 0  # epochs finished

    @property
    def cfg(self) -> TrainConfig:
        return self.config.train

    def fit(self) -> nn.Module:
        """Train from ``self.epoch`` to ``cfg.epochs``, logging and checkpointing each epoch."""
        x, y = self.data.train_x.to(self.device), self.data.train_y.to(self.device)
        monitor = self._monitor_set()
        while self.epoch < self.cfg.epochs:
            start = time.perf_counter()
            self.objective.begin_epoch(self.epoch, self.model, x, y)
            stats = self._train_epoch(x, y)
            if not self.per_batch:
                self.scheduler.step()
            self.epoch += 1
            record = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"], **stats}
            record |= self.objective.epoch_metrics()
            record |= self._monitor(*monitor)
            record["time_s"] = round(time.perf_counter() - start, 3)
            append_jsonl(self.run_dir / "metrics.jsonl", record)
            self._checkpoint()
        return self.model

    def _seed(self, salt: int) -> torch.Generator:
        seed = (self.config.seed * 1_000_003 + self.epoch * 101 + salt) % (2**63)
        torch.manual_seed(seed)  # dropout and other global-RNG users
        return torch.Generator(self.device).manual_seed(seed)

    def _train_epoch(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        gen = self._seed(0)
        order = torch.randperm(len(y), generator=gen, device=self.device)
        bs = self.cfg.batch_size
        num_batches = max(1, len(y) // bs)  # drop the last partial batch
        augment = AUGMENTATIONS[self.data.augment]
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        eps = 0.0
        with progress_task(f"epoch {self.epoch + 1}/{self.cfg.epochs}", num_batches, self.progress) as advance:
            for b in range(num_batches):
                idx = order[b * bs : (b + 1) * bs]
                xb, yb = prepare_input(as_float(augment(x[idx], generator=gen)), self.config.perf), y[idx]
                eps = warmup_eps(self.cfg, self.epoch, b, num_batches)
                with autocast(self.config.perf, self.device):  # forward passes only
                    loss, logits = self.objective(self.model, xb, yb, eps, gen)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if self.per_batch:
                    self.scheduler.step()
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
                advance(1)
        n = num_batches * bs
        return {"train_loss": loss_sum.item() / n, "train_acc": 100.0 * correct.item() / n, "train_eps": eps}

    def _monitor_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        cap, y = self.cfg.monitor_examples, self.data.test_y
        if cap is None or cap >= len(y):
            return self.data.test_x, y
        per_class = max(1, cap // self.data.num_classes)
        idx = class_balanced_indices(y, per_class, seed=self.config.seed)
        return self.data.test_x[idx], y[idx]

    def _monitor(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Class-wise clean accuracy and robustness under the monitor attack, in percent."""
        m = self.cfg.monitor
        attack = build_attack(m, self.model)
        res = evaluate(self.model, x, y, {m.name: attack}, class_names=self.data.class_names,
                       device=self.device, seed=self.config.seed, progress=False, perf=self.config.perf)
        k = self.data.num_classes
        return {"clean": accuracy_block(res.labels, res.clean_pred, k),
                "robust": accuracy_block(res.labels, res.adv_pred[m.name], k), "monitor": m.name}

    def _checkpoint(self) -> None:
        ckpt = self.run_dir / "checkpoints"
        meta = model_meta(self.config, self.data, self.epoch)
        save_model(self.model, ckpt / "last.safetensors", meta)
        if self.epoch in self.cfg.save_epochs:
            save_model(self.model, ckpt / f"epoch{self.epoch}.safetensors", meta)
        state = {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "objective": self.objective.state_dict()}
        save_state(state, ckpt / "last.state.safetensors")

    def restore(self) -> None:
        """Continue from the run folder's last checkpoint (epoch granularity)."""
        ckpt = self.run_dir / "checkpoints"
        if not (ckpt / "last.state.safetensors").is_file():
            return  # crashed before the first epoch ended: start over
        state = load_state(ckpt / "last.state.safetensors")
        load_model(self.model, ckpt / "last.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state_dict(state.get("objective", {}))
        self.epoch = int(state["epoch"])
        _truncate_metrics(self.run_dir / "metrics.jsonl", self.epoch)


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop metric lines written after the checkpoint being resumed."""
    kept = [r for r in read_jsonl(path) if r.get("epoch", 0) <= epoch]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
