"""Mid-epoch resume: where an epoch stands and each process's random state.

A state file written after batch b of an epoch holds, besides model,
optimiser, scheduler and objective (see :mod:`classwise.train.loop`), the
position ``batch`` = b + 1 and, per process, everything that differs between
processes or is not rebuilt from the seed: the running loss and accuracy sums
of the epoch, the objective's class tally so far, the global torch RNG state
(CPU, and CUDA when used) and the epoch's generator state(s). The epoch's
permutation is not stored: it is drawn again from the epoch's seed, and the
generator is then set to its saved state, so the remaining batches see the
same images, augmentation and attack noise as without the interruption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checkpoint import tree_to


@dataclass
class EpochRun:
    """Where the current epoch stands: batches done and running sums (device scalars)."""

    batch: int
    loss_sum: torch.Tensor  # sum over examples of the loss, this process's shard
    correct: torch.Tensor  # correct predictions on the trained logits, this process's shard
    eps: float = 0.0  # training eps of the last batch

    @classmethod
    def fresh(cls, device: torch.device) -> EpochRun:
        return cls(0, torch.zeros((), device=device), torch.zeros((), device=device))


def rank_state(run: EpochRun, gens: dict[str, torch.Generator], tally: dict, device: torch.device) -> dict:
    """This process's part of a mid-epoch state, all on the CPU (gathered to rank 0, saved)."""
    state = {"cpu_rng": torch.get_rng_state(), "loss_sum": run.loss_sum.cpu(), "correct": run.correct.cpu(),
             "tally": tree_to(tally, "cpu")}
    state |= {f"{name}_gen": g.get_state() for name, g in gens.items()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rank_state(state: dict, batch: int, eps: float, gens: dict[str, torch.Generator],
                       device: torch.device) -> tuple[EpochRun, dict]:
    """Set RNG and generator states from :func:`rank_state`; returns the run and the tally (on ``device``)."""
    torch.set_rng_state(state["cpu_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    for name, g in gens.items():
        g.set_state(state[f"{name}_gen"])
    run = EpochRun(batch, state["loss_sum"].to(device), state["correct"].to(device), eps)
    return run, tree_to(state.get("tally", {}), device)
