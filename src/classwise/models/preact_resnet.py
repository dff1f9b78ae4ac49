"""Pre-activation ResNet-18 (He et al., ECCV 2016) as in "Fast is better than free".

Reference: Wong, Rice and Kolter, ICLR 2020, github.com/locuslab/fast_adversarial,
``CIFAR10/preact_resnet.py`` (after kuangliu/pytorch-cifar): 3x3 stem conv,
pre-activation BasicBlocks [2, 2, 2, 2], a final BN-ReLU before global average
pooling, 512-d features. PyTorch-default initialisation, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Classifier, GlobalPool, Normalize, stack_blocks


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut (1x1 conv, when shapes change) sees BN-ReLU(x).

    x: (B, in_planes, H, W) -> (B, planes, H / stride, W / stride).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


def preact_resnet18_backbone(in_channels: int) -> nn.Sequential:
    """PreActResNet-18 up to global pooling: (B, C, H, W) -> (B, 512)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
        stack_blocks(PreActBlock, 64, 64, 2, 1),      # (B, 64, H, W)
        stack_blocks(PreActBlock, 64, 128, 2, 2),     # (B, 128, H/2, W/2)
        stack_blocks(PreActBlock, 128, 256, 2, 2),    # (B, 256, H/4, W/4)
        stack_blocks(PreActBlock, 256, 512, 2, 2),    # (B, 512, H/8, W/8)
        nn.BatchNorm2d(512),
        nn.ReLU(),
        GlobalPool(),                                 # (B, 512)
    )


def build_preact_resnet18(
    num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Classifier:
    """PreActResNet-18; any image_size >= 8 works (global average pooling)."""
    backbone = preact_resnet18_backbone(in_channels)
    return Classifier(Normalize(mean, std, in_channels), backbone, nn.Linear(512, num_classes))
