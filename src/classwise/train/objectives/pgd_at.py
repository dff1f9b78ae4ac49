"""PGD adversarial training (Madry et al., ICLR 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Objective, training_attack


class PGDAT(Objective):
    """``CE(f(x'), y)`` with x' the last iterate of the training attack.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018. The attack is ``cfg.attack`` (e.g. PGD-10, eps 0.031,
    step 0.007, random start), run in eval mode, step scaled with the current eps.

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    attack_name: str | None = None  # None: cfg.attack.name

    def adversarial(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Training adversarial examples x' (B, C, H, W), detached."""
        return training_attack(self.cfg.attack, model, eps, self.attack_name)(x, y, generator)

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(self.adversarial(model, x, y, eps, generator))
        return F.cross_entropy(logits, y, reduction="none"), logits
