"""What a dataset loader is asked for; every registry loader takes one ``LoadRequest``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from classwise.data.bundle import DataBundle

DEFAULT_ROOT = Path("~/.cache/classwise/data")


@dataclass(frozen=True)
class LoadRequest:
    """Arguments of ``load_data`` as seen by a loader.

    Attributes:
        root: data folder given by the user, or None for the default.
        download: whether a loader may fetch missing files.
        image_size: side length to resize images to (None keeps the native size).
        seed: reserved for loaders with a random split; every built-in split is fixed.
    """

    root: Path | None = None
    download: bool = True
    image_size: int | None = None
    seed: int = 0

    def root_or_default(self) -> Path:
        """The user's root, else ``~/.cache/classwise/data`` (expanded, not created)."""
        return (self.root if self.root is not None else DEFAULT_ROOT).expanduser()


Loader = Callable[[LoadRequest], DataBundle]
