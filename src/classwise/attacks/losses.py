"""Losses that attacks ascend, summed over the batch, and their registry.

Sums (not means) keep each example's input gradient independent of the batch
size. Every loss maps logits (B, K) and labels (B,) to a scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of softmax(logits / T), summed over the batch.

    T < 1 sharpens the softmax, T > 1 flattens it (Temperature-PGD, section 4
    of "Intriguing class-wise properties of adversarial training").
    logits: (B, K); y: (B,) int64; returns a scalar.
    """
    return F.cross_entropy(logits / temperature, y, reduction="sum")


def true_class_mask(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K) bool, True at each example's label.

    A comparison with ``arange`` rather than ``F.one_hot``, which on the CPU
    reads the labels' range back to the host (two syncs per call).
    y: (B,) int64; returns (B, K).
    """
    return torch.arange(num_classes, device=y.device) == y[:, None]


def cw_margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example Carlini-Wagner margin ``max_{j != y} z_j - z_y``.

    Positive exactly where the example is misclassified.
    logits: (B, K); y: (B,) int64; returns (B,).
    """
    true = logits.gather(1, y[:, None]).squeeze(1)  # (B,)
    other = logits.masked_fill(true_class_mask(y, logits.shape[1]), float("-inf")).amax(dim=1)  # (B,)
    return other - true


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y``, summed over the batch.

    Positive exactly where the example is misclassified; attacks maximise it.
    logits: (B, K); y: (B,) int64; returns a scalar.
    """
    return cw_margins(logits, y).sum()


# The registry: loss name -> summed loss on (logits, y). Read-only.
LOSSES: Mapping[str, LossFn] = MappingProxyType({"ce": cross_entropy, "cw": cw_margin})


def loss_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_loss` (and by the ``loss=`` of attacks)."""
    return tuple(LOSSES)


def _on_scaled_logits(
    logits: torch.Tensor, y: torch.Tensor, loss: LossFn, temperature: float
) -> torch.Tensor:
    return loss(logits / temperature, y)


def make_loss(name: str, temperature: float = 1.0) -> LossFn:
    """The summed loss ``name`` ("ce" or "cw") on logits divided by ``temperature``.

    For "ce" this is the Temperature-PGD loss; for "cw" the temperature only
    rescales the margin, so signed-gradient steps do not change.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(loss_names())}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if temperature == 1.0:
        return LOSSES[name]
    return partial(_on_scaled_logits, loss=LOSSES[name], temperature=temperature)
