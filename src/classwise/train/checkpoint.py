"""Checkpoints as safetensors, written atomically; never unpickled.

Model weights go to ``<name>.safetensors`` (loadable by any safetensors
reader). Training state (optimiser, scheduler, RNG, epoch) is a nested
structure: its tensors are stored as safetensors entries and the rest as JSON
in the file's metadata, so resuming needs no pickle either. The trainer's
state file also holds the model weights, so one file (written by one atomic
rename) is everything ``--resume`` reads: a kill between two files cannot
leave a mismatched pair. Files are flushed to disk (fsync) before the rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from ..errors import ClasswiseError
from ..fileio import atomic_open

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


def save_model(model: nn.Module, path: Path, meta: dict | None = None) -> None:
    """Model weights (and buffers) to safetensors; ``meta`` is stored as JSON."""
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    atomic_save(state, path, {"classwise": json.dumps(meta or {})})


def load_model(model: nn.Module, path: Path) -> dict:
    """Load weights saved by :func:`save_model` into ``model``; returns the meta.

    Weights with NaN or Inf (a diverged run) are refused: nothing measured on them means anything.
    """
    tensors, metadata = safe_load(path)
    check_finite(tensors, path)
    meta = read_meta(metadata, path)
    load_weights(model, tensors, path)
    return meta


def read_meta(metadata: dict[str, str], path: Path) -> dict:
    """The JSON model meta of a checkpoint's metadata ({} when absent), or one clear error."""
    try:
        meta = json.loads(metadata.get("classwise", "{}"))
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise ClasswiseError(f"checkpoint {path} has damaged metadata (not a JSON object)")
    return meta


def check_finite(tensors: dict[str, torch.Tensor], path: Path | str) -> None:
    """Refuse weights holding NaN or Inf, naming the first such tensor and ``path``."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ClasswiseError(f"checkpoint {path} holds non-finite weights (NaN or Inf in '{name}'): "
                                 "the training diverged; retrain with a smaller learning rate")


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


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
