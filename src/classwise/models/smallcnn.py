"""SmallCNN: the 4-conv MNIST network of TRADES (Zhang et al., ICML 2019).

Reference: github.com/yaodongyu/TRADES, ``models/small_cnn.py``. The paper
("Intriguing class-wise properties of adversarial training", section 3) uses
it for MNIST: conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, 3x3
convs without padding, ReLU, dropout after fc1. Initialisation as in the
reference: Kaiming-normal conv weights, zero conv biases, PyTorch-default
fc1/fc2, and a zero final layer (so logits are all 0 at initialisation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from .base import Classifier, Normalize


def conv_out_size(image_size: int) -> int:
    """Spatial side after conv-conv-pool-conv-conv-pool (28 -> 4, 32 -> 5)."""
    side = image_size
    for _ in range(2):
        side = (side - 4) // 2
    if side < 1:
        raise ValueError(f"smallcnn needs image_size >= 10, got {image_size}")
    return side


def smallcnn_backbone(in_channels: int, image_size: int, drop: float) -> nn.Sequential:
    """Everything up to fc2's ReLU: (B, C, S, S) -> (B, 200)."""
    side = conv_out_size(image_size)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
        ("maxpool1", nn.MaxPool2d(2, 2)),
        ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
        ("maxpool2", nn.MaxPool2d(2, 2)),
        ("flatten", nn.Flatten()),                       # (B, 64 * side * side)
        ("fc1", nn.Linear(64 * side * side, 200)), ("relu5", nn.ReLU()),
        ("drop", nn.Dropout(drop)),
        ("fc2", nn.Linear(200, 200)), ("relu6", nn.ReLU()),  # (B, 200)
    ]))


def init_smallcnn(backbone: nn.Module, head: nn.Linear) -> None:
    """Reference initialisation: Kaiming-normal convs, zero biases, zero head."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)


def build_smallcnn(
    num_classes: int, in_channels: int, image_size: int,
    mean: Sequence[float], std: Sequence[float], drop: float = 0.5,
) -> Classifier:
    """SmallCNN of TRADES; features (B, 200), head ``nn.Linear(200, K)``.

    Args:
        drop: dropout probability after fc1 (0.5 in the reference).
    """
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"smallcnn drop must be in [0, 1), got {drop}")
    backbone = smallcnn_backbone(in_channels, image_size, drop)
    head = nn.Linear(200, num_classes)
    init_smallcnn(backbone, head)
    return Classifier(Normalize(mean, std, in_channels), backbone, head)
