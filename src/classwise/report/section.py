"""One section of the report as a value, and small text helpers shared by the section builders.

A :class:`Section` says what it shows (title, text, items, a table) and carries
the files it needs (:class:`File`: CSV or Markdown text; :class:`Figure`: the
plot function and its data; :class:`Gallery`: strips of example images, each a
:class:`Shot` of :class:`Tile` thumbnails). Building a section writes nothing: the
report's writer (:func:`classwise.report.build.write_sections`) writes the files,
draws the figures and writes the thumbnails, then renders every section to
Markdown and HTML (:mod:`classwise.report.render`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import sample_classes
from ..fileio import safe_name

MAX_SHOWN_CLASSES = 20  # above this many classes, per-class figures show a seeded sample of 12
SAMPLED_CLASSES = 12


@dataclass(frozen=True)
class File:
    """A text file of the report: ``key`` in the returned paths, ``path`` relative to the run folder."""

    key: str
    path: str
    text: str


@dataclass(frozen=True, eq=False)
class Figure:
    """A figure not drawn yet: ``plot(*args, run_dir / path, **kwargs)`` (a :mod:`classwise.report.figures` function).

    ``args`` hold the figure's data (e.g. the confusion matrix, the class names).
    """

    key: str
    path: str
    plot: Callable[..., Path]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def render(self, run_dir: Path) -> Path:
        """Draw the figure into ``run_dir / path`` (PNG, SVG beside it); return the PNG's path."""
        return self.plot(*self.args, run_dir / self.path, **self.kwargs)


@dataclass(frozen=True, eq=False)
class Tile:
    """One gallery image not written yet: ``image`` (H, W, C) uint8 goes to ``path`` (PNG, relative to the run)."""

    path: str
    image: np.ndarray
    alt: str


@dataclass(frozen=True)
class Shot:
    """One example of a gallery: its images (clean, adversarial, amplified perturbation) and one caption."""

    tiles: tuple[Tile, ...]
    caption: str


@dataclass(frozen=True)
class Strip:
    """One row of a gallery: a label (e.g. "cat: 4 fooled, 2 robust") and its examples, read left to right."""

    label: str
    shots: tuple[Shot, ...]
    anchor: str = ""  # the class the strip belongs to (the HTML class picker shows it), "" for none


@dataclass(frozen=True)
class Gallery:
    """Image strips (clean, adversarial, amplified perturbation per example), written as PNG thumbnails."""

    strips: tuple[Strip, ...]


@dataclass(frozen=True)
class Section:
    """One report section: a sentence saying what it shows, then a list, a table, a figure or a gallery.

    ``kind``: "" (plain), "card" (the headline card, ``badges`` as short labels) or
    "details" (collapsed in HTML, ``<details>``). ``files``: its CSV or Markdown files.
    """

    title: str
    text: str = ""
    items: tuple[str, ...] = ()
    table_md: str = ""
    table_html: str = ""
    figure: Figure | None = None
    files: tuple[File, ...] = ()
    gallery: Gallery | None = None
    kind: str = ""
    badges: tuple[str, ...] = ()


def slug(name: str) -> str:
    """A file-name-safe form of an attack name (bounded: ``fileio.safe_name``; the caller adds prefix and suffix)."""
    name = safe_name(name, keep="_.-", room=32)
    return "attack" if name == "_" else name


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
