"""Checkpoints: the file format, the model metadata and its inverse.

The one module that reads and writes model files, for the trainer, evaluation,
transfer surrogates and outside models alike. :func:`model_meta` records what
rebuilds a model without its config (architecture, options, head, classes,
input shape, normalisation); :func:`model_from_meta` is its exact inverse.

Checkpoints are safetensors, written atomically; never unpickled. Outside
weights (:func:`read_weights`: ``.safetensors``, or ``.pt``/``.pth``/``.bin``
state dicts read with ``torch.load(weights_only=True)``) are loaded into an
outside model by :func:`load_outside`, whose record (:func:`outside_meta`, the
model meta plus the weights file, its SHA-256 and the normalisation) rebuilds it.

Model weights go to ``<name>.safetensors`` (loadable by any safetensors
reader). Training state (optimiser, scheduler, RNG, epoch) is a nested
structure: its tensors are stored as safetensors entries and the rest as JSON
in the file's metadata, so resuming needs no pickle either. The trainer's
state file also holds the model weights, so one file (written by one atomic
rename) is everything ``--resume`` reads: a kill between two files cannot
leave a mismatched pair. Files are flushed to disk (fsync) before the rename.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from .config import MAX_IMAGE_SIZE, HeadConfig, ModelConfig, from_dict
from .data import DataBundle
from .errors import ClasswiseError
from .fileio import atomic_open
from .models import Normalized, create_model, split_spec, unwrap, use_he_head
from .models.outside import load_robustbench, robustbench_file

META_KEY = "classwise"  # the safetensors metadata entry holding the model meta (JSON)
_META_NEEDS = ("model", "num_classes", "in_channels", "image_size")
# The largest sizes model metadata may claim (checked before a layer is allocated from them): more classes than
# any dataset has, more channels than any image, a side longer than data.image_size accepts.
META_LIMITS = {"num_classes": 100_000, "in_channels": 64, "image_size": MAX_IMAGE_SIZE}

_TENSOR = "__tensor__"


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "s") -> Any:
    """Replace every tensor in a nested dict/list by a reference; fill ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}.{len(tensors)}"
        t = obj.detach()  # a private CPU copy: entries must not share memory
        tensors[key] = (t.clone() if t.device.type == "cpu" else t.cpu()).contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError("state keys must be str or int")
        return {"__dict__": [[k, flatten_state(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, tensors, prefix) for v in obj]
    return obj


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, dict) and _TENSOR in tree:
        return tensors[tree[_TENSOR]]
    if isinstance(tree, dict) and "__dict__" in tree:
        return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """``save_file`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_open(path) as f:
        f.write(save(tensors, metadata=metadata))
        f.flush()
        os.fsync(f.fileno())


def safe_load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, or one clear error.

    The file is read once into memory, so a writer replacing it (atomic rename)
    while we read can never mix two versions.
    """
    path = Path(path)
    if not path.is_file():
        raise ClasswiseError(f"checkpoint {path} does not exist")
    try:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
        return load(data), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError, AttributeError) as e:
        raise ClasswiseError(f"checkpoint {path} is corrupt or truncated ({e})") from e


def build_model(model: ModelConfig, data: DataBundle) -> nn.Module:
    """The configured model for ``data`` (classes, channels, size, normalisation, head)."""
    net = create_model(model.name, num_classes=data.num_classes, in_channels=data.in_channels,
                       image_size=data.image_size, mean=data.mean, std=data.std, **model.kwargs)
    return use_he_head(net, model.head.scale, model.head.margin) if model.head.name == "he" else net


def model_meta(model: ModelConfig, data: DataBundle, **extra: Any) -> dict:
    """What rebuilds the model of ``model`` on ``data`` without a config (inverse: :func:`model_from_meta`)."""
    return {
        "model": model.name, "kwargs": dict(model.kwargs), "head": dataclasses.asdict(model.head),
        "dataset": data.name, "num_classes": data.num_classes, "in_channels": data.in_channels,
        "image_size": data.image_size, "mean": list(data.mean), "std": list(data.std),
        "class_names": list(data.class_names), **extra,
    }


def model_from_meta(meta: dict, source: Path | str = "checkpoint") -> nn.Module:
    """Rebuild exactly the recorded architecture (head included), with fresh weights."""
    missing = [k for k in _META_NEEDS if k not in meta]
    if missing:
        raise ClasswiseError(f"{source} lacks model metadata ({', '.join(missing)})")
    kwargs = meta.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ClasswiseError(f"{source} has damaged model metadata ('kwargs' must be a mapping, got {kwargs!r})")
    sizes = {key: _meta_size(meta, key, source) for key in META_LIMITS}
    head = from_dict(HeadConfig, meta.get("head") or {}, "head")
    try:
        net = create_model(meta["model"], **sizes, mean=tuple(meta.get("mean", (0.0,))),
                           std=tuple(meta.get("std", (1.0,))), **kwargs)
    except (TypeError, ValueError) as e:
        raise ClasswiseError(f"{source} has damaged model metadata: cannot rebuild the model ({e})") from e
    return use_he_head(net, head.scale, head.margin) if head.name == "he" else net


def _meta_size(meta: dict, key: str, source: Path | str) -> int:
    """``meta[key]`` as an integer in [1, META_LIMITS[key]]; else one error, before anything is allocated from it."""
    value, limit = meta[key], META_LIMITS[key]
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        value = int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= limit:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ClasswiseError(f"{source} has damaged model metadata ('{key}' must be an integer in [1, {limit}], "
                             f"got {str(value)[:40]!r})")
    return value


def save_model(model: nn.Module, path: Path, meta: dict | None = None) -> None:
    """Model weights (and buffers) to safetensors; ``meta`` is stored as JSON."""
    save_weights(unwrap(model).state_dict(), path, meta)


def save_weights(state: dict[str, torch.Tensor], path: Path, meta: dict | None = None) -> None:
    """A model state dict (weights and buffers) as :func:`save_model` writes it; ``meta`` as JSON."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_save(tensors, path, {META_KEY: json.dumps(meta or {})})


def read_meta(metadata: dict[str, str], source: Path) -> dict:
    """The model meta stored by :func:`save_model` ({} when absent), or one clear error."""
    try:
        meta = json.loads(metadata.get(META_KEY, "{}"))
    except json.JSONDecodeError as e:
        raise ClasswiseError(f"checkpoint {source} has damaged metadata ({e})") from e
    if not isinstance(meta, dict):
        raise ClasswiseError(f"checkpoint {source} has damaged metadata (not a JSON object)")
    return meta


def load_model(model: nn.Module, path: Path) -> dict:
    """Load weights saved by :func:`save_model` into ``model``; returns the meta.

    Weights with NaN or Inf (a diverged run) are refused: nothing measured on them means anything.
    """
    tensors, metadata = safe_load(path)
    check_finite(tensors, path)
    load_weights(model, tensors, path)
    return read_meta(metadata, path)


def load_model_file(path: Path | str) -> tuple[nn.Module, dict]:
    """(model in eval mode, meta) from one checkpoint written by :func:`save_model`."""
    tensors, metadata = safe_load(Path(path))
    meta = read_meta(metadata, Path(path))
    model = model_from_meta(meta, path)
    check_finite(tensors, Path(path))
    load_weights(model, tensors, Path(path))
    return model.eval(), meta


def check_finite(tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse weights holding NaN or Inf (a diverged model gives no meaningful result)."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ClasswiseError(f"checkpoint {source} holds non-finite weights (NaN or Inf in '{name}'): "
                                 "the training diverged; retrain with a smaller learning rate")


def head_weight(path: Path) -> torch.Tensor | None:
    """The classifier weight (K, D) stored under ``head.weight`` of a checkpoint, if any."""
    if not Path(path).is_file():
        return None
    return safe_load(path)[0].get("head.weight")


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """``model.load_state_dict(tensors)`` with one clear error naming ``source``."""
    try:
        unwrap(model).load_state_dict(tensors)
    except RuntimeError as e:
        raise ClasswiseError(f"checkpoint {source} does not fit the model: {str(e).splitlines()[0]}") from e


def save_state(state: dict, path: Path) -> None:
    """A nested training state (optimiser, scheduler, RNG, epoch...) to safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten_state(state, tensors)
    atomic_save(tensors, path, {"tree": json.dumps(tree)})


def load_state(path: Path) -> dict:
    """Inverse of :func:`save_state`."""
    tensors, metadata = safe_load(path)
    if "tree" not in metadata:
        raise ClasswiseError(f"{path} is not a classwise training-state file")
    return unflatten_state(json.loads(metadata["tree"]), tensors)


def tree_to(tree: Any, device: torch.device | str) -> Any:
    """A nested dict/list with every tensor moved to ``device`` (loaded states are on the CPU)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: tree_to(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [tree_to(v, device) for v in tree]
    return tree


# -- outside models ---------------------------------------------------------------------------

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")  # checked in this order
_PREFIXES = ("module.", "_orig_mod.")


def file_sha256(path: Path | str) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``.pt``/``.pth``/``.bin`` file, never unpickled.

    ``torch.load(weights_only=True)`` refuses anything but tensors and plain
    containers (so a pickle payload never runs). Wrappers are unwrapped:
    ``{"state_dict": ...}``, ``{"model": ...}`` (with other entries such as the
    epoch or the optimiser beside them), and ``module.`` / ``_orig_mod.`` key
    prefixes (DataParallel, torch.compile).
    """
    path = Path(path)
    if not path.is_file():
        raise ClasswiseError(f"weights file {path} does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ClasswiseError(f"weights file {path} must end in {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        return _strip_prefixes(safe_load(path)[0])
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, OSError) as e:
        raise ClasswiseError(f"refusing {path}: torch.load(weights_only=True) cannot read it as a state dict "
                             f"({str(e).splitlines()[0][:160]}); classwise never unpickles model files: save "
                             "torch.save(model.state_dict(), FILE) or a .safetensors file") from None
    return _strip_prefixes(_state_dict_of(obj, path))


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a loaded object (wrappers unwrapped), or one clear error."""
    while isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            odd = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:3]
            raise ClasswiseError(f"{path} is not a state dict: entries {', '.join(map(str, odd))} are not "
                                 f"tensors (and no {'/'.join(_WRAPPERS)} entry holds one)")
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ClasswiseError(f"{path} holds no state dict (found {type(obj).__name__})")
    return {str(k): v for k, v in obj.items()}


def _strip_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        for prefix in _PREFIXES:
            key = key[len(prefix):] if key.startswith(prefix) else key
        out[key] = value
    return out


def fit_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path | str) -> None:
    """Load an outside state dict into ``model`` (the network of a :class:`Normalized`), strictly.

    A classwise model may lack its ``normalize.*`` buffers (then the recorded
    normalisation stays). One error lists missing and unexpected keys and
    mismatched shapes.
    """
    target = model.net if isinstance(model, Normalized) else unwrap(model)
    expected = target.state_dict()
    optional = {k for k in expected if k.startswith("normalize.")}
    missing = [k for k in expected if k not in tensors and k not in optional]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ClasswiseError(f"weights {source} do not fit the model: " + "; ".join(
            f"{what} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                               ("shape mismatches", shapes)) if keys))
    target.load_state_dict(tensors, strict=False)


def outside_meta(model: ModelConfig, data: DataBundle, mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
                 normalization: str, weights: Path | None, **extra: Any) -> dict:
    """The record of an outside model: :func:`model_meta` with the normalisation used, the weights
    file and its SHA-256 (for RobustBench the file in ``model_dir``); inverse :func:`load_outside`."""
    meta = model_meta(model, data, **extra) | {"mean": None if mean is None else list(mean),
                                               "std": None if std is None else list(std), "normalization": normalization}
    if split_spec(model.name)[0] == "robustbench":
        kw = model.kwargs
        weights = robustbench_file(model.name.split(":", 1)[1], kw["dataset"], kw["threat_model"], kw["model_dir"])
    meta["weights"] = None if weights is None else str(Path(weights).resolve())
    meta["sha256"] = file_sha256(weights) if weights is not None and Path(weights).is_file() else None
    return meta


def load_outside(meta: dict, source: Path | str = "model.json") -> nn.Module:
    """The outside model of ``meta`` (:func:`outside_meta`) with its weights, in eval mode.

    The weights file must still have the recorded SHA-256 (else one error).
    """
    kind, name = split_spec(str(meta.get("model", "")))
    weights = meta.get("weights")
    if kind == "robustbench":
        kw = meta.get("kwargs") or {}
        model = load_robustbench(name, kw["dataset"], kw["threat_model"], kw["model_dir"])
        _check_digest(meta, source)
        return model.eval()
    model = model_from_meta(meta, source)
    if weights is not None:
        _check_digest(meta, source)
        tensors = read_weights(weights)
        check_finite(tensors, Path(weights))
        fit_weights(model, tensors, weights)
    return model.eval()


def _check_digest(meta: dict, source: Path | str) -> None:
    path, recorded = meta.get("weights"), meta.get("sha256")
    if path is None or recorded is None:
        return
    if not Path(path).is_file():
        raise ClasswiseError(f"{source}: the weights file {path} is gone (it was recorded with SHA-256 {recorded})")
    if file_sha256(path) != recorded:
        raise ClasswiseError(f"{source}: the weights file {path} changed since the run was made (SHA-256 differs); "
                             "make a new run for the new weights")
