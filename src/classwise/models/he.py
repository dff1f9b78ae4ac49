"""The hypersphere-embedding (HE) head of Pang et al. (2020).

Paper: Pang, Yang, Dong, Xu, Zhu, Su, "Boosting Adversarial Training with
Hypersphere Embedding", NeurIPS 2020; appendix G of "Intriguing class-wise
properties of adversarial training" (equations 3-6), where the scale ``s``
plays the role of the temperature factor 1/T.

Feature normalisation (FN) and weight normalisation (WN) put features and
class weights on the unit sphere, so logit k is ``s * cos(theta_k)``. During
training an angular margin ``m`` is subtracted from the true class's cosine
(:func:`margin_logits`); the model itself always outputs ``s * cos``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HEHead(nn.Module):
    """Cosine classifier ``s * <z / |z|, w_k / |w_k|>`` with a settable scale.

    Args:
        in_features: D, the feature dimension.
        num_classes: K.
        scale: s = 1/T > 0. Stored as a buffer, so checkpoints keep the value
            a temperature schedule (HE-LIS, HE-CMP) last set.
        margin: angular margin m >= 0 used by the training loss only.

    ``weight`` is the (K, D) parameter (unnormalised, as for ``nn.Linear``, so
    the weight-norm analysis still reads ``head.weight``); there is no bias.
    Shapes: z (B, D) -> logits (B, K).
    """

    scale: torch.Tensor

    def __init__(self, in_features: int, num_classes: int, scale: float = 15.0, margin: float = 0.2) -> None:
        super().__init__()
        if scale <= 0 or margin < 0:
            raise ValueError(f"HEHead needs scale > 0 and margin >= 0, got scale={scale}, margin={margin}")
        self.in_features, self.out_features, self.margin = in_features, num_classes, float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's default init
        self.register_buffer("scale", torch.tensor(float(scale)))

    def cosine(self, z: torch.Tensor) -> torch.Tensor:
        """cos(theta) (B, K) between normalised features z (B, D) and class weights."""
        return F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).t()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``s * cos(theta)``: (B, D) -> (B, K)."""
        return self.scale * self.cosine(z)

    def set_scale(self, scale: float) -> None:
        """Set s = 1/T in place (kept in the state_dict)."""
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale.fill_(float(scale))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"scale={float(self.scale):g}, margin={self.margin:g}"


def margin_logits(logits: torch.Tensor, y: torch.Tensor, scale: float | torch.Tensor, margin: float) -> torch.Tensor:
    """``s * (cos - m * onehot(y))`` from logits ``s * cos``: (B, K), (B,) -> (B, K).

    The one-hot is a comparison with ``arange`` (``F.one_hot`` syncs with the host on the CPU).
    """
    onehot = torch.arange(logits.shape[1], device=y.device) == y[:, None]  # (B, K)
    return logits - scale * margin * onehot.to(logits.dtype)


def use_he_head(model: nn.Module, scale: float = 15.0, margin: float = 0.2) -> nn.Module:
    """Replace ``model.head`` (an ``nn.Linear(D, K)``) by an :class:`HEHead`; returns model."""
    old = model.head
    if not isinstance(old, nn.Linear):
        raise ValueError(f"use_he_head needs a linear model.head, got {type(old).__name__}")
    model.head = HEHead(old.in_features, old.out_features, scale, margin).to(old.weight.device)
    return model
