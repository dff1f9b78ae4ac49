"""The model contract shared by every architecture: normalise, backbone, linear head.

Every model maps images in [0, 1] pixel space, (B, C, H, W), to logits (B, K).
Input normalisation lives inside the model as buffers, so attacks and the
L-inf threat model work in pixel space. ``model.features(x)`` gives the
penultimate features (B, D) and ``model.head`` the final ``nn.Linear(D, K)``,
whose weight rows are the class weight vectors of the paper's weight-norm
analysis (section 4, figure 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def per_channel(values: Sequence[float] | float, channels: int, name: str) -> torch.Tensor:
    """Broadcast 1 or ``channels`` numbers to a (1, C, 1, 1) float tensor."""
    vals = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ValueError(f"{name} needs 1 or {channels} values (one per channel), got {len(vals)}")
    return torch.tensor(vals, dtype=torch.float32).view(1, channels, 1, 1)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std saved in the state_dict.

    Args:
        mean, std: 1 value (shared) or one per channel; std must be > 0.
        channels: number of input channels C.

    x: (B, C, H, W) in [0, 1]; returns (B, C, H, W).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float, channels: int) -> None:
        super().__init__()
        std_t = per_channel(std, channels, "std")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be > 0 for every channel, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", per_channel(mean, channels, "mean"))
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Classifier(nn.Module):
    """Normalize -> backbone (B, D) -> head (B, K); the contract all models share.

    Args:
        normalize: the :class:`Normalize` applied to [0, 1] inputs.
        backbone: maps normalised images (B, C, H, W) to features (B, D).
        head: final layer, usually ``nn.Linear(D, K)``; replaceable (e.g. by a
            hypersphere-embedding head) as long as it maps (B, D) to (B, K).
    """

    def __init__(self, normalize: Normalize, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, D) of images x (B, C, H, W) in [0, 1]."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of images x (B, C, H, W) in [0, 1]."""
        return self.head(self.features(x))


def stack_blocks(
    block: Callable[[int, int, int], nn.Module], in_planes: int, planes: int, num_blocks: int, stride: int
) -> nn.Sequential:
    """One ResNet stage: ``num_blocks`` blocks, the first with ``stride``.

    ``block(in_planes, planes, stride)`` builds one residual block.
    """
    blocks = [block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(num_blocks)]
    return nn.Sequential(*blocks)


class GlobalPool(nn.Module):
    """Global average pooling and flatten: (B, D, H, W) -> (B, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
