"""FastCNN: a small VGG-style CIFAR network for adversarial training on a CPU.

In the spirit of airbench (Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024) and
the fast CIFAR-10 ResNets before it: three stages of two 3x3 conv-BatchNorm-ReLU
layers, each stage ending in a 2x2 max-pool, then global average pooling and a
linear head. With the default widths (32, 64, 128) it has 0.29 M parameters and
costs about 38 M multiply-adds per 32x32 image (ResNet-18: 556 M); preset
``cifar10-cpu`` uses widths (48, 96, 192) (0.65 M parameters, about 2.2x the
cost), whose 15 epochs of FGSM-RS fit in an hour on two CPU cores.
It is not a model of the paper, which uses ResNet-18 / WideResNet on CIFAR-10.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import Classifier, GlobalPool, Normalize


def conv_bn(in_planes: int, planes: int) -> list[nn.Module]:
    """3x3 conv (padding 1, no bias) -> BatchNorm -> ReLU; keeps (H, W)."""
    return [nn.Conv2d(in_planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]


def fastcnn_backbone(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    """(B, C, H, W) -> (B, widths[-1]): per stage conv-bn-relu x2 and a 2x2 max-pool, then global average pooling."""
    layers: list[nn.Module] = []
    planes = in_channels
    for width in widths:
        layers += [*conv_bn(planes, width), *conv_bn(width, width), nn.MaxPool2d(2)]
        planes = width
    return nn.Sequential(*layers, GlobalPool())


def build_fastcnn(
    num_classes: int, in_channels: int, image_size: int,
    mean: Sequence[float], std: Sequence[float], widths: Sequence[int] = (32, 64, 128),
) -> Classifier:
    """FastCNN; features (B, widths[-1]), head ``nn.Linear(widths[-1], K)``.

    Args:
        widths: channels of each stage; each stage halves H and W, so
            ``image_size`` must be at least 2 ** len(widths).
    """
    widths = tuple(widths)
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ValueError(f"fastcnn widths must be positive integers, got {list(widths)}")
    if image_size < 2 ** len(widths):
        raise ValueError(f"fastcnn with {len(widths)} stages needs image_size >= {2 ** len(widths)}, got {image_size}")
    backbone = fastcnn_backbone(in_channels, widths)
    return Classifier(Normalize(mean, std, in_channels), backbone, nn.Linear(widths[-1], num_classes))
