"""The demo job: the ``demo`` preset (robust SmallCNN on mnist5k) trained, evaluated and reported."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from .evaluate import evaluate_run
from .train import train_run


def demo(run_dir: str | Path, *, overrides: tuple[str, ...] = (), overwrite: bool = False,
         progress: bool = True) -> Path:
    """Train the demo preset (robust SmallCNN on mnist5k), evaluate it, write the report."""
    config = load_config("demo", overrides)
    run_dir = train_run(config, run_dir, overwrite=overwrite, progress=progress)
    evaluate_run(run_dir, progress=progress)
    return run_dir
