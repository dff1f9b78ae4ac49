"""One section of the report, and small text helpers shared by the section builders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis import sample_classes

MAX_SHOWN_CLASSES = 20  # above this many classes, per-class figures show a seeded sample of 12
SAMPLED_CLASSES = 12


@dataclass(frozen=True)
class Section:
    """One report section: a sentence saying what it shows, then a list, a table or an image."""

    title: str
    text: str = ""
    items: tuple[str, ...] = ()
    table_md: str = ""
    table_html: str = ""
    image: Path | None = None


def slug(name: str) -> str:
    """A file-name-safe form of an attack name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "attack"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def shown_classes(num_classes: int, seed: int = 0) -> np.ndarray:
    """Classes drawn in per-class figures: all up to 20, else a seeded sample of 12 (figures 1, 4)."""
    if num_classes <= MAX_SHOWN_CLASSES:
        return np.arange(num_classes)
    return sample_classes(num_classes, SAMPLED_CLASSES, seed)


def sampled_note(num_classes: int) -> str:
    """The sentence saying that a figure shows sampled classes, or ""."""
    if num_classes <= MAX_SHOWN_CLASSES:
        return ""
    return (f" With {num_classes} classes the figure shows a seeded random sample of {SAMPLED_CLASSES} "
            "classes, as the paper does for CIFAR-100 and ImageNet.")
