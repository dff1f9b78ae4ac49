"""Several processes (``torchrun``): process group, DDP wrapping, collectives.

``torchrun --nproc_per_node=N -m classwise train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`distributed` then starts a process group
(NCCL on GPUs, gloo on CPU) and yields a :class:`Dist` that the pipeline and
the trainer pass around (no module-level state of ours). With one process
(no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every method is a no-op, so the
single-process code path is the same code.

Rules the trainer follows (docs/training.md, "Several GPUs"): every rank draws
the same epoch permutation (broadcast from rank 0) and takes its shard of each
global batch; gradients are averaged by DDP; attacks run on the unwrapped
module (input gradients only); only rank 0 writes files and runs the monitor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

TIMEOUT = timedelta(minutes=60)  # rank 0 alone runs the monitor while the others wait


@dataclass(frozen=True)
class Dist:
    """This process's place among ``world`` processes (rank 0 is the main one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``cuda`` becomes this process's GPU (``cuda:LOCAL_RANK``) when distributed."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. a download), then the others."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce ``t`` in place (sum over ranks) and return it."""
        if self.enabled:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def broadcast_(self, t: torch.Tensor) -> torch.Tensor:
        """Overwrite ``t`` with rank 0's ``t`` (in place) and return it."""
        if self.enabled:
            tdist.broadcast(t, src=0)
        return t

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (CPU tensors only: they are pickled)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part ``idx[rank::world]`` of a global batch of indices."""
        return idx[self.rank :: self.world] if self.enabled else idx

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel when distributed, else unchanged."""
        if not self.enabled:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def dist_from_env() -> Dist:
    """Rank, world size and local rank as torchrun sets them (defaults: one process)."""
    env = os.environ
    return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


@contextmanager
def distributed(device: torch.device) -> Iterator[Dist]:
    """Start the process group for ``WORLD_SIZE`` > 1 and end it afterwards.

    ``device`` (the resolved run device) picks the backend: NCCL for CUDA,
    gloo otherwise. A process group started by the caller is used as is.
    """
    if tdist.is_available() and tdist.is_initialized():
        yield Dist(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        return
    d = dist_from_env()
    if not d.enabled:
        yield d
        return
    if device.type == "cuda":
        torch.cuda.set_device(d.local_rank)
    tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield d
    finally:
        tdist.destroy_process_group()
