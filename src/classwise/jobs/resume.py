"""Which config changes ``--resume`` (and ``evaluate --set``) may make: configs compared key by key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import RunConfig, load_config, load_run_config, to_dict
from ..errors import ClasswiseError
from ..runs import Run

# Config keys that --resume may change (they do not change what the run computes).
RESUMABLE = ("train.epochs", "device", "perf.", "train.checkpoint_every", "train.tensorboard", "eval.", "notes",
             "data.workers")


def resumed_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The saved config of ``run_dir`` with ``overrides`` that may change on resume (else one error).

    Allowed: more epochs (step schedules), device, perf, checkpointing, TensorBoard,
    eval settings; each change is recorded in the config's notes.
    """
    run = Run.open(run_dir)
    saved = run.config
    config = load_run_config(run.files.config, overrides)
    changed = changed_keys(saved, config)
    refused = [k for k in changed if not k.startswith(RESUMABLE)]
    if refused:
        raise ClasswiseError(f"--resume cannot change {', '.join(refused)} (it would change the run); "
                             "start a new run with --out, or --overwrite")
    if config.train.epochs != saved.train.epochs:
        _check_more_epochs(saved, config)
    if not changed:
        return saved
    note = "resumed with " + ", ".join(f"{k}={_flat(config)[k]!r} (was {_flat(saved).get(k)!r})" for k in changed)
    return dataclasses.replace(config, notes=(*config.notes, note))


# Config keys that change how a run is computed or stored, not what it learns: no note when --set changes them.
NOT_RECIPE = ("device", "perf.", "data.root", "data.download", "data.workers", "data.stream", "train.checkpoint_every",
              "train.tensorboard", "notes")


def recipe_config(source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The config of a new run: preset or YAML ``source`` with ``overrides``, noting where they change its recipe.

    A preset's notes describe the preset ("5 epochs, eps ramped over the first 2");
    a run made with ``--set train.epochs=1`` is not that recipe, so a note says
    which keys differ from ``source`` and their values there (schedules such as
    lr milestones and the eps warm-up are kept as written, not rescaled).
    """
    config = load_config(source, overrides)
    base = load_config(source)
    changed = [k for k in changed_keys(base, config) if not k.startswith(NOT_RECIPE)]
    if not changed:
        return config
    now, was = _flat(config), _flat(base)
    name = Path(source).stem if Path(source).suffix else str(source)
    note = (f"Not the {name} recipe: this run sets " + ", ".join(f"{k}={now.get(k)!r} ({name}: {was.get(k)!r})"
                                                                 for k in changed)
            + f"; the notes above describe {name} as written (schedules are not rescaled).")
    return dataclasses.replace(config, notes=(*config.notes, note))


def _check_more_epochs(saved: RunConfig, config: RunConfig) -> None:
    if config.train.epochs < saved.train.epochs:
        raise ClasswiseError(f"--resume cannot lower train.epochs from {saved.train.epochs} to {config.train.epochs}")
    if saved.train.schedule != "step":
        raise ClasswiseError(f"--resume cannot change train.epochs of a '{saved.train.schedule}' learning-rate "
                             "schedule (it is stretched over all epochs); start a new run")


def _flat(config: RunConfig) -> dict[str, object]:
    def walk(node: object, prefix: str) -> dict[str, object]:
        if not isinstance(node, dict) or prefix in ("model.kwargs.",) or not node:
            return {prefix[:-1]: node}
        return {k: v for key, value in node.items() for k, v in walk(value, f"{prefix}{key}.").items()}

    return walk(to_dict(config), "")


def changed_keys(a: RunConfig, b: RunConfig) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
