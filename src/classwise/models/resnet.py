"""ResNet-18 for 32x32 images (He et al., CVPR 2016), the paper's CIFAR/SVHN/STL model.

The common CIFAR variant (github.com/kuangliu/pytorch-cifar, used by TRADES and
MART): 3x3 stem conv with stride 1 and no max-pool, BasicBlocks [2, 2, 2, 2]
with 64-128-256-512 channels, global average pooling, 512-d features.
PyTorch-default initialisation, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Classifier, GlobalPool, Normalize, stack_blocks


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a (1x1 conv-BN when shapes change) shortcut.

    x: (B, in_planes, H, W) -> (B, planes, H / stride, W / stride).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet18_backbone(in_channels: int) -> nn.Sequential:
    """CIFAR ResNet-18 up to global pooling: (B, C, H, W) -> (B, 512)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        stack_blocks(BasicBlock, 64, 64, 2, 1),      # (B, 64, H, W)
        stack_blocks(BasicBlock, 64, 128, 2, 2),     # (B, 128, H/2, W/2)
        stack_blocks(BasicBlock, 128, 256, 2, 2),    # (B, 256, H/4, W/4)
        stack_blocks(BasicBlock, 256, 512, 2, 2),    # (B, 512, H/8, W/8)
        GlobalPool(),                                # (B, 512)
    )


def build_resnet18(
    num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Classifier:
    """CIFAR ResNet-18; any image_size >= 8 works (global average pooling)."""
    backbone = resnet18_backbone(in_channels)
    return Classifier(Normalize(mean, std, in_channels), backbone, nn.Linear(512, num_classes))
