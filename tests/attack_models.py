"""Small models and data shared by the attack tests (imported, not collected)."""

from __future__ import annotations

import functools

import torch
from torch import nn


def small_cnn() -> nn.Module:
    """A tiny conv net with BatchNorm and Dropout, so mode handling matters."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),  # (B, 8, 13, 13)
        nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(),  # (B, 16, 6, 6)
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 6 * 6, 10),
    )


@functools.cache
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 packaged MNIST images (N, 1, 28, 28) in [0, 1] and labels, shuffled."""
    from classwise.data.builtin import read_mnist5k

    images, labels = read_mnist5k()  # (5000, 784) uint8, sorted by class
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    x = (torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 255)[perm]
    return x, torch.tensor(labels, dtype=torch.int64)[perm]


@functools.cache
def trained_cnn(seed: int = 0, steps: int = 60) -> nn.Module:
    """A small CNN fitted on the first 4,500 images (the rest are held out), in eval mode."""
    x, y = mnist()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = small_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            idx = torch.randint(0, 4500, (128,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def held_out(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """n held-out images (n, 1, 28, 28) and labels."""
    x, y = mnist()
    return x[4500 : 4500 + n], y[4500 : 4500 + n]


def fooled(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the model in eval mode misclassifies x (B, ...); its train/eval mode is restored."""
    from classwise.attacks import eval_mode

    with torch.no_grad(), eval_mode(model):
        return model(x).argmax(dim=1) != y
