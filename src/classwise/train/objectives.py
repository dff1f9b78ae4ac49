"""Training objectives: the loss of one batch, given the model and clean inputs.

Each objective maps (model, x (B,C,H,W) in [0,1], y (B,), eps, generator) to
(loss scalar, logits (B, K) used for the training accuracy).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import create_attack
from ..config import AttackConfig

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, float, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def standard(attack: AttackConfig) -> Objective:
    """Plain cross-entropy on clean images (the paper's standard models)."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, gen: torch.Generator):
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    return loss


def pgd_at(attack: AttackConfig) -> Objective:
    """Madry et al. (2018) PGD adversarial training: CE on the last PGD iterate.

    The step size scales with the current eps, so an eps warm-up keeps the
    configured ratio step/eps.
    """

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, gen: torch.Generator):
        step = None if attack.step_size is None else attack.step_size * eps / max(attack.eps, 1e-12)
        adversary = create_attack(attack.name, model, eps, step_size=step, keep_best=False)
        x_adv = adversary(x, y, gen)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits

    return loss


OBJECTIVES: dict[str, Callable[[AttackConfig], Objective]] = {"standard": standard, "pgd-at": pgd_at}


def create_objective(method: str, attack: AttackConfig) -> Objective:
    """Objective by registry name (``TrainConfig.method``)."""
    if method not in OBJECTIVES:
        raise ValueError(f"unknown training method '{method}' (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[method](attack)
