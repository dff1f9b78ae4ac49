"""The training loop: epochs of an objective, class-wise metrics every epoch.

Data stays on the device as uint8 (N, C, H, W); each batch is augmented on
tensors and turned into [0, 1] floats. A streamed dataset
(:class:`classwise.data.StreamBundle`) instead comes batch by batch from a
DataLoader whose workers decode and augment (:mod:`classwise.data.streaming`):
the same batch count, sharding and per-epoch determinism. After every epoch the model's class-wise
clean accuracy and class-wise robustness under the monitor attack are logged
(figure 1 of the paper) and the checkpoint is written atomically.
Randomness is seeded per epoch, so resuming at an epoch boundary replays the
same data order, augmentation and attack noise; ``train.checkpoint_every``
adds mid-epoch states (:mod:`classwise.train.resume`), so a run killed at any
moment continues to the same weights.

The checkpoint is ``checkpoints/last.state.safetensors``, one file holding
model weights, optimiser, scheduler, objective, the epoch and batch reached
and (mid-epoch) each process's RNG states and running sums; ``--resume``
reads only it. ``last.safetensors`` (weights and meta, for evaluation) is
written at epoch ends, before the state file.

Under ``torchrun`` (:mod:`classwise.train.distributed`) the model is wrapped
in DDP, each process trains on its shard of every global batch, sums are
all-reduced, and only rank 0 runs the monitor and writes files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..analysis import accuracy_block
from ..attacks import build_attack
from ..checkpoint import (build_model, load_model, load_state, load_weights, model_meta, save_model, save_state,
                          save_weights, tree_to)
from ..config import RunConfig, TrainConfig
from ..data import DataBundle, StreamBundle, as_float, class_balanced_indices, make_loader
from ..data.streaming import batches
from ..errors import ClasswiseError
from ..evaluate import evaluate, resolve_device
from ..fileio import TEMPORARY, append_jsonl, append_text, atomic_write, read_jsonl
from ..models import unwrap
from ..perf import autocast, prepare_input, prepare_model
from ..progress import format_duration, log_line, progress_task
from ..runfiles import TRAIN_STATE, RunFiles
from .tensorboard import write_scalars
from .augment import AUGMENTATIONS
from .distributed import Dist
from .objectives import create_objective
from .resume import EpochRun, rank_state, restore_rank_state
from .schedules import make_optimizer, make_scheduler, per_batch, warmup_eps

STATE_FILE = TRAIN_STATE  # the training state file in checkpoints/ (RunFiles.train_state)


@dataclass
class Trainer:
    """Owns model, optimiser and schedule of one run; ``fit`` trains to the last epoch.

    ``dist`` places this process among several (torchrun); the default is one process.
    """

    config: RunConfig
    data: DataBundle | StreamBundle
    run_dir: Path
    progress: bool = True
    dist: Dist = field(default_factory=Dist)

    @property
    def files(self) -> RunFiles:
        """The run folder's files this loop writes: metrics, train.log, TensorBoard, checkpoints."""
        return RunFiles(Path(self.run_dir))

    def __post_init__(self) -> None:
        self.device = self.dist.device(resolve_device(self.config.device))
        self._check_world()
        self.objective = create_objective(self.config.train, self.config.model)
        self._hold_out_validation()
        torch.manual_seed(self.config.seed)  # the initial weights follow the run's seed
        model = build_model(self.config.model, self.data).to(self.device)
        if self.cfg.sync_batchnorm and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = self.dist.wrap(prepare_model(model, self.config.perf), self.device)
        self.optimizer = make_optimizer(self.config.train, self.model)
        steps = max(1, len(self.data.train_y) // self.config.train.batch_size)  # as _train_epoch
        self.scheduler = make_scheduler(self.config.train, self.optimizer, steps)
        self.per_batch = per_batch(self.config.train)
        self.epoch = 0  # epochs finished
        self.resume_point: dict | None = None  # a mid-epoch state loaded by restore()
        self._bad_step = torch.zeros((), dtype=torch.long, device=self.device)  # set per epoch
        self.lr_used = self.optimizer.param_groups[0]["lr"]  # the lr of the last optimiser step (metrics' "lr")

    def _check_world(self) -> None:
        bs, world, n = self.cfg.batch_size, self.dist.world, len(self.data.train_y)
        if bs % world:
            raise ClasswiseError(f"train.batch_size {bs} must be divisible by the {world} processes (global batch)")
        if self.data.streamed and n < bs:
            what = "has no train/ folder (a val-only folder is for evaluation)" if not n else f"has {n} training images"
            raise ClasswiseError(f"the streamed data {what}; training needs at least train.batch_size = {bs}")
        if self.cfg.sync_batchnorm and self.dist.enabled and self.device.type != "cuda":
            raise ClasswiseError("train.sync_batchnorm needs CUDA devices")

    def _hold_out_validation(self) -> None:
        """Give the objective its validation split (fairness methods), removed from the training set.

        About ``objective.validation_size()`` class-balanced training images drawn with the
        run's seed (:func:`classwise.data.class_balanced_indices`); their indices into the
        training set as loaded are recorded in ``validation.json`` (rank 0).
        """
        size, data = self.objective.validation_size(), self.data
        if not size:
            return
        if not isinstance(data, DataBundle):
            raise ClasswiseError(f"train.method {self.cfg.method} holds out a validation split, "
                                 "which needs a dataset held in memory (not a streamed folder)")
        y = data.train_y
        per_class = max(1, size // data.num_classes)
        idx = class_balanced_indices(y, per_class, seed=self.config.seed)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[idx] = False
        self.objective.validation = data.train_x[idx].to(self.device), y[idx].to(self.device)
        self.data = dataclasses.replace(data, train_x=data.train_x[keep], train_y=y[keep])
        if self.dist.main:
            record = {"examples": len(idx), "per_class": per_class, "seed": self.config.seed,
                      "training_images_left": int(keep.sum()), "indices": idx.tolist()}
            atomic_write(self.files.validation, json.dumps(record) + "\n")

    @property
    def cfg(self) -> TrainConfig:
        return self.config.train

    @property
    def module(self) -> nn.Module:
        """The model without its DDP wrapper (what attacks, the monitor and checkpoints use)."""
        return unwrap(self.model)

    def fit(self) -> nn.Module:
        """Train from where the run stands to ``cfg.epochs``, logging and checkpointing each epoch."""
        x, y = self._train_tensors()
        monitor = self._monitor_set()
        while self.epoch < self.cfg.epochs:
            start = time.perf_counter(), time.process_time()
            if self.resume_point is None:  # a resumed epoch has begun already
                self.objective.begin_epoch(self.epoch, self.model, x, y)
            stats = self._train_epoch(x, y)
            self.objective.end_epoch(self.epoch, self.model)
            if not self.per_batch:
                self.scheduler.step()
            self.epoch += 1
            if self.dist.main:
                self._log(stats, monitor, start)
            self._checkpoint()
        self.dist.barrier()
        return self.module

    def _train_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training set on the device (N, C, H, W) uint8 and (N,); streamed: a class-balanced sample of
        about ``train.he.probe_examples`` images (what objectives read in ``begin_epoch``), decoded once."""
        if not self.data.streamed:
            return self.data.train_x.to(self.device), self.data.train_y.to(self.device)
        y = self.data.train_y
        per_class = max(1, min(self.cfg.he.probe_examples // self.data.num_classes, int(torch.bincount(y).min())))
        idx = class_balanced_indices(y, per_class, seed=self.config.seed)
        return self.data.train_images(idx).to(self.device), y[idx].to(self.device)

    def _log(self, stats: dict, monitor: tuple[torch.Tensor, torch.Tensor], start: tuple[float, float]) -> None:
        """Append the epoch's line (training numbers, objective extras, monitor) to metrics.jsonl.

        ``start``: (wall, process CPU) clocks at the epoch's start. ``time_s`` and
        ``train_s`` are wall seconds (with and without the monitor), ``cpu_s`` the
        process's CPU seconds (all threads): what the epoch cost on a shared machine.
        """
        train_s = time.perf_counter() - start[0]  # before the monitor runs: the training throughput
        record = {"epoch": self.epoch, "lr": self.lr_used, **stats}
        record |= self.objective.epoch_metrics()
        record |= self._monitor(*monitor)
        record["time_s"] = round(time.perf_counter() - start[0], 3)
        record["train_s"] = round(train_s, 3)
        record["cpu_s"] = round(time.process_time() - start[1], 3)
        append_jsonl(self.files.metrics, record)
        append_text(self.files.train_log, log_line(self._epoch_line(record)) + "\n")
        if self.cfg.tensorboard:
            write_scalars(self.files.tensorboard, record, self.data.class_names)

    def _epoch_line(self, record: dict) -> str:
        """One line per epoch (terminal and train.log): loss, monitor clean/robust, worst class, img/s, ETA."""
        clean, robust, names = record["clean"], record["robust"], self.data.class_names
        images = max(1, len(self.data.train_y) // self.cfg.batch_size) * self.cfg.batch_size
        worst = robust.get("worst_class")
        worst_text = "n/a" if worst is None else f"{names[worst]} ({robust['per_class'][worst]:.1f}%)"
        eta = record["time_s"] * (self.cfg.epochs - self.epoch)
        pct = lambda v: "n/a" if v is None else f"{v:.1f}%"  # noqa: E731
        return (f"epoch {self.epoch}/{self.cfg.epochs} loss {record['train_loss']:.4f} "
                f"clean {pct(clean['overall'])} robust({record['monitor']}) {pct(robust['overall'])} "
                f"worst class {worst_text} {images / max(record['train_s'], 1e-9):.1f} img/s "
                f"ETA {format_duration(eta)}")

    def _epoch_seed(self, salt: int) -> int:
        return (self.config.seed * 1_000_003 + self.epoch * 101 + salt) % (2**63)

    def _seed(self, salt: int) -> torch.Generator:
        seed = self._epoch_seed(salt)
        torch.manual_seed(seed + self.dist.rank)  # dropout and other global-RNG users
        return torch.Generator(self.device).manual_seed(seed)

    def _generators(self) -> dict[str, torch.Generator]:
        """The epoch's generators: "data" (order and augmentation, the same on every rank)
        and, with several processes, "attack" (attack noise, one stream per rank)."""
        gens = {"data": self._seed(0)}
        if self.dist.enabled:
            gens["attack"] = torch.Generator(self.device).manual_seed(self._epoch_seed(1 + self.dist.rank))
        return gens

    def _train_epoch(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        gens = self._generators()
        order = None if self.data.streamed else \
            self.dist.broadcast_(torch.randperm(len(y), generator=gens["data"], device=self.device))
        every = self.cfg.checkpoint_every
        num_batches = max(1, len(self.data.train_y) // self.cfg.batch_size)  # drop the last partial batch
        run = self._start_run(gens)
        self._bad_step.zero_()  # the step of the epoch's first non-finite loss (0: none)
        self.model.train()
        with progress_task(f"epoch {self.epoch + 1}/{self.cfg.epochs}", num_batches,
                           self.progress and self.dist.main, unit="batch") as advance:
            advance(run.batch)
            for xb, yb in self._batches(x, y, order, run.batch, num_batches, gens["data"]):
                self._step(xb, yb, gens, run, num_batches)
                advance(1)
                if every and run.batch % every == 0 and run.batch < num_batches:
                    self._stop_if_diverged(run, num_batches)
                    self._checkpoint(run, gens)
        self._stop_if_diverged(run, num_batches)
        return self._finish_epoch(run, num_batches)

    def _batches(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor | None, start: int,
                 num_batches: int, gen: torch.Generator):
        """This process's augmented uint8 batches (B / world, C, H, W) and labels, from batch ``start`` on.

        In memory: global batch b is ``order[b * B:(b + 1) * B]``, augmented whole with ``gen`` (the
        same draws on every rank), then sharded. Streamed: the DataLoader of
        :func:`classwise.data.make_loader` (its own per-image seeds; ``gen`` is left to the attack).
        """
        bs = self.cfg.batch_size
        if order is not None:
            for b in range(start, num_batches):
                idx = order[b * bs : (b + 1) * bs]
                xb = AUGMENTATIONS[self.data.augment](x[idx], generator=gen)
                yield self.dist.shard(xb), self.dist.shard(y[idx])
            return
        loader = make_loader(self.data.train, image_size=self.data.image_size, batch_size=bs // self.dist.world,
                             train=True, epoch=self.epoch, seed=self.config.seed, start_batch=start,
                             rank=self.dist.rank, world=self.dist.world, workers=self.data.workers,
                             pin_memory=self.device.type == "cuda")
        for xb, yb in batches(loader):
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def _stop_if_diverged(self, run: EpochRun, num_batches: int) -> None:
        """Stop (before any log line or checkpoint of this epoch is written) when a loss or
        the weights stopped being finite; the last good checkpoint stays. One host sync."""
        params = [p for p in self.module.state_dict().values() if p.is_floating_point()]
        finite = torch.stack([torch.isfinite(p).all() for p in params]).all() if params else torch.tensor(True)
        step, ok = int(self._bad_step), bool(finite)
        where = f"epoch {self.epoch + 1}, step {step or run.batch} of {num_batches}"
        advice = "the last good checkpoint is kept; lower train.lr (or check the data) and train again"
        if step:
            raise ClasswiseError(f"training diverged: the loss became NaN or Inf at {where}; {advice}")
        if not ok:
            raise ClasswiseError(f"training diverged: the weights became NaN or Inf by {where}; {advice}")

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, gens: dict[str, torch.Generator],
              run: EpochRun, num_batches: int) -> None:
        """One optimiser step on this process's shard (B / world, C, H, W) uint8 of a global batch."""
        gen = gens["data"]
        xb = prepare_input(as_float(xb), self.config.perf)
        run.eps = warmup_eps(self.cfg, self.epoch, run.batch, num_batches)
        with autocast(self.config.perf, self.device):  # forward passes only
            loss, logits = self.objective(self.model, xb, yb, run.eps, gens.get("attack", gen))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.lr_used = self.optimizer.param_groups[0]["lr"]  # before any scheduler step: the lr of this step
        self.optimizer.step()
        if self.per_batch:
            self.scheduler.step()
        first_bad = ~torch.isfinite(loss.detach()) & (self._bad_step == 0)  # on the device: no host sync
        self._bad_step = torch.where(first_bad, run.batch + 1, self._bad_step)
        run.loss_sum += loss.detach() * len(yb)
        run.correct += (logits.argmax(1) == yb).sum()
        run.batch += 1

    def _start_run(self, gens: dict[str, torch.Generator]) -> EpochRun:
        """A fresh epoch, or the resumed one: its sums, tally and RNG states as saved."""
        point, self.resume_point = self.resume_point, None
        if point is None:
            return EpochRun.fresh(self.device)
        mine = point["ranks"][self.dist.rank]
        run, tally = restore_rank_state(mine, int(point["batch"]), float(point["eps"]), gens, self.device)
        self.objective.tally.load_state_dict(tally)
        return run

    def _finish_epoch(self, run: EpochRun, num_batches: int) -> dict:
        """Sums over all processes -> the epoch's training numbers; the class tally is summed too."""
        sums = self.dist.sum_(torch.stack([run.loss_sum, run.correct]).float())
        tally = self.objective.tally
        if self.dist.enabled and tally.correct is not None and tally.total is not None:
            self.dist.sum_(tally.correct)
            self.dist.sum_(tally.total)
        loss_sum, correct = sums.tolist()
        n = min(len(self.data.train_y), num_batches * self.cfg.batch_size)  # examples seen (a short set: one batch)
        return {"train_loss": loss_sum / n, "train_acc": 100.0 * correct / n, "train_eps": run.eps}

    def _monitor_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The monitor's test images (M, C, H, W) uint8 and labels: all, or a class-balanced sample
        (a streamed dataset decodes only those files)."""
        cap, y = self.cfg.monitor_examples, self.data.test_y
        if cap is None or cap >= len(y):
            idx = torch.arange(len(y))
        else:
            idx = class_balanced_indices(y, max(1, cap // self.data.num_classes), seed=self.config.seed)
        return self.data.test_images(idx), y[idx]

    def _monitor(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Class-wise clean accuracy and robustness under the monitor attack, in percent (rank 0 only)."""
        m = self.cfg.monitor
        attack = build_attack(m, self.module)
        res = evaluate(self.module, x, y, {m.name: attack}, class_names=self.data.class_names,
                       device=self.device, seed=self.config.seed, progress=False, perf=self.config.perf,
                       zero_grad=False)
        k = self.data.num_classes
        return {"clean": accuracy_block(res.labels, res.clean_pred, k),
                "robust": accuracy_block(res.labels, res.adv_pred[m.name], k), "monitor": m.name}

    def _checkpoint(self, run: EpochRun | None = None, gens: dict[str, torch.Generator] | None = None) -> None:
        """Write the resumable state: at an epoch end (``run`` None) or after ``run.batch`` batches.

        Every process takes part (its RNG states and sums are gathered); rank 0 writes.
        """
        ranks = None
        if run is not None and gens is not None:
            ranks = self.dist.gather(rank_state(run, gens, self.objective.tally.state_dict(), self.device))
        if not self.dist.main:
            return
        files = self.files
        if run is None:
            meta = model_meta(self.config.model, self.data, epoch=self.epoch)
            save_model(self.model, files.checkpoint("last"), meta)
            if self.epoch in self.cfg.save_epochs:
                save_model(self.model, files.checkpoint(f"epoch{self.epoch}"), meta)
            for name, weights in self.objective.extra_checkpoints().items():  # e.g. CFA's "fawa" average
                save_weights(weights, files.checkpoint(name), meta)
        save_state(self._state(run, ranks), files.train_state)

    def _state(self, run: EpochRun | None, ranks: list[dict] | None) -> dict:
        """Everything --resume needs, model weights included (one file, one atomic rename)."""
        state = {"epoch": self.epoch, "batch": 0 if run is None else run.batch,
                 "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "objective": self.objective.state_dict()}
        if run is not None:
            state |= {"eps": run.eps, "ranks": ranks}
        return state

    def restore(self) -> None:
        """Continue from the run folder's state file: an epoch end or a mid-epoch position."""
        files = self.files
        if not files.train_state.is_file():
            return  # crashed before the first checkpoint: start over
        state = load_state(files.train_state)
        if "model" in state:
            load_weights(self.model, state["model"], files.train_state)
        else:  # state files of older versions hold no weights
            load_model(self.model, files.checkpoint("last"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state_dict(tree_to(state.get("objective", {}), self.device))
        self.epoch = int(state["epoch"])
        if int(state.get("batch", 0)) > 0:
            self._check_ranks(len(state["ranks"]))
            self.resume_point = state
        if self.dist.main:
            _truncate_metrics(files.metrics, self.epoch)
            _remove_temporaries(files.checkpoints)

    def _check_ranks(self, saved: int) -> None:
        if saved != self.dist.world:
            raise ClasswiseError(f"the checkpoint was written mid-epoch by {saved} processes; "
                                 f"resume it with {saved}, not {self.dist.world}")


def _remove_temporaries(folder: Path) -> None:
    """Delete temporary files that a killed atomic write left behind."""
    for tmp in folder.glob(".*.tmp"):
        if TEMPORARY.fullmatch(tmp.name):  # a user's own ".notes.tmp" is kept
            tmp.unlink(missing_ok=True)


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop metric lines written after the checkpoint being resumed."""
    kept = [r for r in read_jsonl(path) if r.get("epoch", 0) <= epoch]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
