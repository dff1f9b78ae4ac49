"""The in-memory dataset every stage consumes: uint8 image tensors plus metadata."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class DataBundle:
    """Train and test images of one dataset, kept as uint8 tensors.

    Images stay uint8 (N, C, H, W) so they can live on the GPU cheaply;
    ``as_float`` turns a batch into [0, 1] floats. Normalisation lives in the
    model, never here.

    Attributes:
        name: registry name ("mnist5k", "cifar10", ...).
        train_x, test_x: (N, C, H, W) uint8.
        train_y, test_y: (N,) int64 labels in [0, K).
        class_names: K names, index = label.
        superclasses: superclass name -> list of class indices (may be empty).
        mean, std: per-channel statistics for the model's input normalisation.
        augment: "none" or "crop_flip" (random crop with 4-pixel padding + flip).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]
    superclasses: dict[str, list[int]] = field(default_factory=dict)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    augment: str = "none"
    streamed = False  # class attribute: decoded whole (``StreamBundle`` reads files when needed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def take_train(self, idx: torch.Tensor) -> DataBundle:
        """A copy keeping the training examples at ``idx`` (K,) (a mask or indices)."""
        return dataclasses.replace(self, train_x=self.train_x[idx], train_y=self.train_y[idx])

    def test_images(self, idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The test images at ``idx`` (K,): (K, C, H, W) uint8."""
        return self.test_x[torch.as_tensor(idx, dtype=torch.int64)]

    def train_images(self, idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The training images at ``idx`` (K,), not augmented: (K, C, H, W) uint8."""
        return self.train_x[torch.as_tensor(idx, dtype=torch.int64)]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1]; floats pass through unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
