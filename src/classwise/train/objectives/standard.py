"""Standard training: cross-entropy on clean images (the paper's non-robust models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Objective


class Standard(Objective):
    """``CE(f(x), y)`` per example; ``eps`` and the attack are ignored.

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), logits (B, K).
    """

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y, reduction="none"), logits
