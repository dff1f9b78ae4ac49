"""ResNet-50 (He et al., CVPR 2016) from torchvision, the paper's ImageNet model.

``torchvision.models.resnet50(weights=None)`` with its ``fc`` moved out to be the
contract's ``head`` (``nn.Linear(2048, K)``) and replaced by ``nn.Identity`` in
the backbone, so ``features`` gives the 2048-d pooled features. For
in_channels != 3 the stem conv is replaced by a fresh 7x7/2 conv
(torchvision's Kaiming fan-out initialisation). No pretrained weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import Classifier, Normalize


def resnet50_backbone(num_classes: int, in_channels: int) -> tuple[nn.Module, nn.Linear]:
    """torchvision ResNet-50 split into (backbone (B, C, H, W) -> (B, 2048), fc head)."""
    from torchvision.models import resnet50  # lazy: keep `import classwise.models` light

    net = resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    head = net.fc
    net.fc = nn.Identity()
    return net, head


def build_resnet50(
    num_classes: int, in_channels: int, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Classifier:
    """torchvision ResNet-50; features (B, 2048); any image_size >= 32 works."""
    backbone, head = resnet50_backbone(num_classes, in_channels)
    return Classifier(Normalize(mean, std, in_channels), backbone, head)
