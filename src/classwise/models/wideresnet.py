"""WideResNet (Zagoruyko and Komodakis, BMVC 2016) as in TRADES and MART.

Reference: github.com/yaodongyu/TRADES ``models/wideresnet.py`` (MART uses the
same file). WRN-depth-width: a 3x3 stem conv to 16 channels, three stages of
(depth - 4) / 6 pre-activation blocks with 16w, 32w, 64w channels (strides 1,
2, 2), a final BN-ReLU, global average pooling, 64w-d features. Reference
initialisation: conv weights N(0, 2 / (k * k * out_channels)), BN (1, 0), zero
linear bias. The reference's unused ``sub_block1`` is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Classifier, GlobalPool, Normalize, stack_blocks


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus shortcut.

    When in_planes != planes the shortcut is a 1x1 conv of BN-ReLU(x), as in the
    reference. x: (B, in_planes, H, W) -> (B, planes, H / stride, W / stride).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = F.relu(self.bn2(self.conv1(out)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


def wideresnet_backbone(in_channels: int, depth: int, width: int, dropout: float) -> nn.Sequential:
    """WRN up to global pooling: (B, C, H, W) -> (B, 64 * width)."""
    n = (depth - 4) // 6
    block = partial(WideBlock, dropout=dropout)
    c = [16, 16 * width, 32 * width, 64 * width]
    return nn.Sequential(
        nn.Conv2d(in_channels, c[0], 3, stride=1, padding=1, bias=False),
        stack_blocks(block, c[0], c[1], n, 1),    # (B, 16w, H, W)
        stack_blocks(block, c[1], c[2], n, 2),    # (B, 32w, H/2, W/2)
        stack_blocks(block, c[2], c[3], n, 2),    # (B, 64w, H/4, W/4)
        nn.BatchNorm2d(c[3]),
        nn.ReLU(),
        GlobalPool(),                             # (B, 64w)
    )


def init_wideresnet(backbone: nn.Module, head: nn.Linear) -> None:
    """Reference initialisation (fan-out He normal convs, BN (1, 0), zero head bias)."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.zeros_(head.bias)


def check_wideresnet_args(depth: int, width: int, dropout: float) -> None:
    """Raise ValueError unless depth = 6n + 4 (n >= 1), width >= 1, 0 <= dropout < 1."""
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"wideresnet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"wideresnet width must be an integer >= 1, got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"wideresnet dropout must be in [0, 1), got {dropout}")


def build_wideresnet(
    num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float],
    depth: int = 34, width: int = 10, dropout: float = 0.0,
) -> Classifier:
    """WRN-depth-width (default WRN-34-10 of TRADES/MART); features (B, 64 * width).

    Args:
        depth: total depth, 6n + 4.
        width: widening factor w.
        dropout: dropout probability inside each block (0 in TRADES/MART).
    """
    check_wideresnet_args(depth, width, dropout)
    backbone = wideresnet_backbone(in_channels, depth, width, dropout)
    head = nn.Linear(64 * width, num_classes)
    init_wideresnet(backbone, head)
    return Classifier(Normalize(mean, std, in_channels), backbone, head)
