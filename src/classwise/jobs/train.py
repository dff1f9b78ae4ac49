"""The training job: check everything, make (or reopen) the run folder, train, record the state."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from contextlib import nullcontext
from pathlib import Path

from ..attacks import build_attack
from ..checkpoint import build_model
from ..config import RunConfig
from ..data import DataBundle, StreamBundle
from ..data.streaming import should_stream
from ..errors import ClasswiseError
from ..evaluate import resolve_device
from ..runs import Run, load_run_data
from ..train.distributed import Dist, distributed
from ..train.loop import Trainer
from ..train.objectives import check_method


def check_config(config: RunConfig, data: DataBundle | StreamBundle) -> None:
    """Fail before any folder is created: the method's rules, the model and every attack must hold."""
    check_method(config.train, config.model)
    model = build_model(config.model, data)
    for cfg in (config.train.attack, config.train.monitor, *config.eval.attacks):
        build_attack(cfg, model)


def train_run(config: RunConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> Path:
    """Train ``config`` into ``run_dir`` (new, ``overwrite``-n, or ``resume``-d).

    With ``resume``, ``config`` is the run's saved config with the allowed
    changes applied (:func:`resumed_config`). Under ``torchrun`` every process
    calls this (DDP, docs/training.md); only rank 0 touches the folder.
    """
    if resume and overwrite:
        raise ClasswiseError("--resume and --overwrite exclude each other")
    with distributed(resolve_device(config.device)) as dist:
        config = decide_stream(config, dist)
        with dist.main_first():  # rank 0 downloads, if needed
            data = load_run_data(config)
        check_config(config, data)
        run = _open_for_training(config, Path(run_dir), resume, overwrite) if dist.main else Run(Path(run_dir))
        dist.barrier()
        if not dist.main:
            _fit(config, data, run, resume, progress=False, dist=dist)
            return run.path
        with run.lock():
            _fit(config, data, run, resume, progress, dist)
    return run.path


def decide_stream(config: RunConfig, dist: Dist | None = None) -> RunConfig:
    """``config`` with ``data.stream`` of an image folder decided (rank 0's decision on every rank).

    Saved with the run, so a resumed run (or its evaluation) reads the data the same way.
    """
    d, dist = config.data, dist or Dist()
    if d.name != "imagefolder" or d.stream is not None:
        return config
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    stream = dist.gather(should_stream(d.root, d.image_size, None, copies) if dist.main else None)[0]
    return dataclasses.replace(config, data=dataclasses.replace(d, stream=stream))


def _open_for_training(config: RunConfig, path: Path, resume: bool, overwrite: bool) -> Run:
    """The run folder: created (marker, config, version) or reopened for ``resume``."""
    if not resume:
        return Run.create(path, config, overwrite=overwrite)
    run = Run.open(path)
    if not run.files.train_state.is_file():
        raise ClasswiseError(f"nothing to resume in {path}: it has no training checkpoint yet; "
                             "start it again with --overwrite")
    with run.lock():
        if config != run.config:
            run.save_config(config)
    return run


def _set_aside_results(run: Run, epoch: int, epochs: int) -> Path | None:
    """Training further makes a new model: the old one's results move to ``superseded/`` (said in a warning line)."""
    with run.lock():
        moved = run.set_aside(f"trained further, from epoch {epoch} to {epochs}")
    if moved is not None:
        warnings.warn(f"training further (epoch {epoch} to {epochs}): the earlier model's results, summary and report "
                      f"are moved to {moved}; run `classwise evaluate {run.path}` for the new model's", stacklevel=3)
    return moved


def _fit_or_restore(run: Run, trainer: Trainer, aside: Path | None) -> None:
    """``trainer.fit()``; when it fails before the checkpoint changed, results set aside for it move back."""
    before = run.model_digest()["sha256"] if aside is not None else None
    try:
        trainer.fit()
    except BaseException:
        if aside is not None and run.model_digest()["sha256"] == before:
            with contextlib.suppress(ClasswiseError, OSError):  # the training error is the one to report
                run.restore_aside(aside)
            warnings.warn(f"training stopped before the model changed: the earlier results are back from {aside}",
                          stacklevel=4)
        raise


def _fit(config: RunConfig, data: DataBundle | StreamBundle, run: Run, resume: bool, progress: bool, dist) -> None:
    """Train to the last epoch; status "training" then "trained" (a finished run resumed to no effect keeps its state).

    Any failure on the way, setting up included, leaves the status "failed" with its error line.
    """
    with run.guarded(None) if dist.main else nullcontext():
        trainer = Trainer(config, data, run.path, progress=progress, dist=dist)
        if resume:
            trainer.restore()
    if resume and trainer.epoch >= config.train.epochs and trainer.resume_point is None:
        return
    if not dist.main:
        trainer.fit()
        return
    aside = _set_aside_results(run, trainer.epoch, config.train.epochs) if resume else None
    with run.guarded("training"):
        run.set_status("training", trained=False)
        _fit_or_restore(run, trainer, aside)
    run.set_status("trained", trained=True, epochs=trainer.epoch)
