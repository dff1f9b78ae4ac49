"""HE-LIS: HE with s = 1/T raised linearly per epoch (appendix G, equation 5)."""

from __future__ import annotations

import torch
from torch import nn

from ..schedules import lis_scale
from .he import HE, he_head


class HELIS(HE):
    """HE whose scale s follows the Linear Interpolation Schedule.

    Paper: appendix G of "Intriguing class-wise properties of adversarial
    training": ``s_n = s_0 + n / (N - 1) * (s_F - s_0)`` for 0-based epoch n of
    N, s_0 = ``cfg.he.scale_start`` (1) and s_F = ``cfg.he.scale_end`` (75), no
    angular margin (set ``model.head.margin: 0``). The scale is written into
    the head's ``scale`` buffer, so checkpoints keep it.

    Shapes: as :class:`HE`.
    """

    def begin_epoch(self, epoch: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        t = self.cfg.he
        he_head(model).set_scale(lis_scale(epoch, self.cfg.epochs, t.scale_start, t.scale_end))
        super().begin_epoch(epoch, model, x, y)
