"""PGD adversarial training with the hypersphere-embedding head (Pang et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from ...models.he import HEHead, margin_logits
from ...models import unwrap
from .pgd_at import PGDAT


def he_head(model: nn.Module) -> HEHead:
    """The model's :class:`HEHead`, or a clear error when it has another head."""
    head = unwrap(model).head
    if not isinstance(head, HEHead):
        raise ValueError(f"HE objectives need model.head.name: he, the model has {type(head).__name__}")
    return head


class HE(PGDAT):
    """PGD-AT on HE logits: ``CE(s * (cos(theta') - m * onehot(y)), y)``.

    Paper: Pang et al., "Boosting Adversarial Training with Hypersphere
    Embedding", NeurIPS 2020 (reference code: ShawnXYang/AT_HE, s = 15,
    m = 0.2 on CIFAR-10). FN and WN live in the head (``model.head.name: he``);
    the attack maximises CE of the model's logits ``s * cos`` (no margin), and
    the margin m of ``model.head.margin`` enters the training loss only.
    Subclasses HE-LIS and HE-CMP change s each epoch (:meth:`begin_epoch`).

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    requires_head = "he"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.scale: float | None = None  # s used in the current epoch

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        head = he_head(model)
        logits = model(self.adversarial(model, x, y, eps, generator))
        shifted = margin_logits(logits, y, head.scale, head.margin)
        return F.cross_entropy(shifted, y, reduction="none"), logits

    def epoch_metrics(self) -> dict:
        return super().epoch_metrics() | {"he_scale": self.scale}

    def begin_epoch(self, epoch: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        super().begin_epoch(epoch, model, x, y)
        self.scale = float(he_head(model).scale)

    def state_dict(self) -> dict:
        return super().state_dict() | {"he_scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.scale = state.get("he_scale")
