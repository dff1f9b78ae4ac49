"""Shared fixtures: tiny run settings and a trained tiny run (built once per session)."""

from __future__ import annotations

import os
import pytest

os.environ.setdefault("CLASSWISE_PROGRESS", "0")

# A run small enough for CI: 500 training images, 2 epochs, PGD-3, 100 test images.
TINY = (
    "data.train_examples=500",
    "train.epochs=2",
    "train.batch_size=50",
    "train.attack={name: pgd3, eps: 0.3, step_size: 0.1}",
    "train.monitor={name: pgd3, eps: 0.3, step_size: 0.1}",
    "train.monitor_examples=100",
    "eval.examples=100",
    "eval.attacks=[{name: fgsm, eps: 0.3}, {name: pgd5, eps: 0.3, step_size: 0.1}]",
)


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    return TINY
