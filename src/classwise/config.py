"""Run configuration: frozen dataclasses loaded from YAML, validated with clear errors.

A preset (``configs/*.yaml``) gives the defaults, ``--set key=value`` flags
override single fields, and the resolved config is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ClasswiseError

TRAIN_METHODS = ("standard", "pgd-at")
OPTIMIZERS = ("sgd", "adam")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ClasswiseError(message)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and where its files are (``root`` None = default cache).

    ``train_examples`` keeps a class-balanced sample of the training set (quick runs).
    """

    name: str = "mnist5k"
    root: str | None = None
    download: bool = True
    image_size: int | None = None
    train_examples: int | None = None

    def __post_init__(self) -> None:
        _check(self.image_size is None or self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
        _check(self.train_examples is None or self.train_examples >= 1, "data.train_examples must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """Registry name of the model and extra constructor arguments."""

    name: str = "smallcnn"
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttackConfig:
    """An attack spec of the registry ("fgsm", "pgd40", ...) and its budget."""

    name: str = "pgd40"
    eps: float = 0.3
    step_size: float | None = None
    restarts: int = 1

    def __post_init__(self) -> None:
        _check(0.0 <= self.eps <= 1.0, f"eps must be in [0, 1], got {self.eps}")
        _check(self.step_size is None or self.step_size >= 0, "step_size must be >= 0")
        _check(self.restarts >= 1, f"restarts must be >= 1, got {self.restarts}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and objective (section 3 / appendix E of the paper).

    ``eps_warmup_epochs`` > 0 ramps the training eps linearly from 0 to the
    attack's eps over that many epochs (a deviation from the paper, used by
    the quick demo). ``monitor`` is the attack logged per epoch on the test set
    (figure 1); ``monitor_examples`` caps how many test images it attacks.
    """

    method: str = "pgd-at"
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    milestones: tuple[int, ...] = (55, 75, 90)
    gamma: float = 0.1
    eps_warmup_epochs: int = 0
    attack: AttackConfig = field(default_factory=lambda: AttackConfig("pgd40", 0.3, 0.01))
    monitor: AttackConfig = field(default_factory=lambda: AttackConfig("pgd10", 0.3, None))
    monitor_examples: int | None = 1000
    save_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check(self.method in TRAIN_METHODS, f"unknown training method '{self.method}' (known: {', '.join(TRAIN_METHODS)})")
        _check(self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}' (known: {', '.join(OPTIMIZERS)})")
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.eps_warmup_epochs >= 0, "eps_warmup_epochs must be >= 0")
        _check(self.monitor_examples is None or self.monitor_examples >= 1, "monitor_examples must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Final evaluation: attacks, which checkpoint, how many test images."""

    attacks: tuple[AttackConfig, ...] = (AttackConfig("fgsm", 0.3, None), AttackConfig("pgd40", 0.3, 0.01))
    checkpoint: str = "last"
    examples: int | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        _check(len(self.attacks) >= 1, "eval.attacks needs at least one attack")
        _check(self.examples is None or self.examples >= 1, "eval.examples must be >= 1")
        _check(self.batch_size >= 1, "eval.batch_size must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; saved resolved as ``config.yaml`` in the run folder."""

    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    notes: tuple[str, ...] = ()


def preset_names() -> list[str]:
    """Names of the presets shipped in ``configs/`` (= ``classwise/presets``)."""
    return sorted(p.name[:-5] for p in resources.files("classwise.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a preset name or YAML path, apply ``key.sub=value`` overrides, validate."""
    raw = _read_yaml(source) if source is not None else {}
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw, "")


def _read_yaml(source: str | Path) -> dict:
    path = Path(source)
    if not path.exists() and str(source) in preset_names():
        path = Path(str(resources.files("classwise.presets") / f"{source}.yaml"))
    if not path.is_file():
        raise ClasswiseError(f"config '{source}' is neither a file nor a preset (presets: {', '.join(preset_names())})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ClasswiseError(f"cannot parse config {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ClasswiseError(f"config {path} must be a mapping at the top level")
    return data


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ClasswiseError(f"override '{item}' must look like key.sub=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ClasswiseError(f"override '{item}': '{part}' is not a section")
    node[leaf] = yaml.safe_load(value)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a plain mapping, recursively, with clear errors."""
    if not isinstance(raw, dict):
        raise ClasswiseError(f"config section '{where or 'top'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClasswiseError(f"unknown config key '{_join(where, unknown[0])}' (known: {', '.join(sorted(known))})")
    values = {k: _coerce(hints[k], v, _join(where, k)) for k, v in raw.items()}
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is dict or typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ClasswiseError(f"config key '{where}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool and not isinstance(value, bool):
        raise ClasswiseError(f"config key '{where}' must be true or false, got {value!r}")
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ClasswiseError(f"config key '{where}' must be a number, got {value!r}")
    if hint is int and float(value) != int(value):
        raise ClasswiseError(f"config key '{where}' must be an integer, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ClasswiseError(f"config key '{where}' must be a string, got {value!r}")
    return hint(value) if hint in (int, float) else value


def to_dict(config: Any) -> Any:
    """Plain, YAML-ready form of a config (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in fields(config)}
    if isinstance(config, (tuple, list)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
