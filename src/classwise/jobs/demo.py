"""The demo job: the ``demo`` preset (robust SmallCNN on mnist5k) trained, evaluated and reported."""

from __future__ import annotations

from pathlib import Path

from .evaluate import evaluate_run
from .resume import recipe_config, resumed_config
from .train import train_run


def demo(run_dir: str | Path, *, overrides: tuple[str, ...] = (), overwrite: bool = False,
         progress: bool = True, resume: bool = False) -> Path:
    """Train the demo preset (robust SmallCNN on mnist5k), evaluate it, write the report.

    ``resume`` continues an interrupted demo in ``run_dir`` from its last checkpoint
    (its saved config, ``overrides`` as ``train --resume`` allows them).
    """
    config = resumed_config(run_dir, overrides) if resume else recipe_config("demo", overrides)
    run_dir = train_run(config, run_dir, resume=resume, overwrite=overwrite, progress=progress)
    evaluate_run(run_dir, progress=progress)
    return run_dir
