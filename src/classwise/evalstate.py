"""Resumable evaluations: each finished batch's outputs kept on disk, so a killed evaluation continues.

AutoAttack keeps an ``EvaluationState`` of its cascade; ours is per batch of
examples, over every attack at once: an evaluation's batches are independent
(batch b draws its randomness from its own generators, seeded with
``batch_seed(seed, b)``), so the batches a killed run finished can be read back
and the rest attacked as an uninterrupted run would, giving the same results
bit for bit where the arithmetic is the same.

The state file is named by a fingerprint of everything that decides the
outputs: the model's weights and buffers, the images and labels, each attack's
facts, the batch size, the seed and the kind of pass (cascade or not). A state
of other settings is never read (a changed test set or checkpoint starts
fresh). It is written atomically at most every ``every_s`` seconds (safetensors:
the tensors, and the fingerprint in its metadata; never unpickled) and removed
when the evaluation ends.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import atomic_save, safe_load
from .errors import ClasswiseError

FORMAT = "classwise-evaluation-state/1"
Parts = list[tuple[int, dict[str, torch.Tensor]]]  # (start of the batch in the set, its outputs by name)


def _update(h: Any, t: torch.Tensor) -> None:
    """Hash a tensor's dtype, shape and bytes (any dtype, any device)."""
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def fingerprint(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, facts: dict[str, Any],
                settings: dict[str, Any]) -> str:
    """SHA-256 of what decides an evaluation's outputs: weights and buffers, images (N, C, H, W), labels (N,),
    the attacks' facts and the evaluation's settings (batch size, seed, kind of pass)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _update(h, t)
    _update(h, images)
    _update(h, labels)
    h.update(json.dumps([facts, settings], sort_keys=True, default=str).encode())
    return h.hexdigest()


class EvalState:
    """The finished batches of one evaluation call, saved to ``folder/<fingerprint>.safetensors``."""

    def __init__(self, folder: Path, key: str, every_s: float) -> None:
        self.path, self.key, self.every_s = Path(folder) / f"{key[:32]}.safetensors", key, every_s
        self._saved_at = time.monotonic()

    def load(self) -> Parts:
        """The batches a killed run of the same evaluation finished ([] when there are none)."""
        if not self.path.is_file():
            return []
        try:
            tensors, meta = safe_load(self.path)
        except ClasswiseError:
            return []  # torn or foreign: attack everything again
        if meta.get("format") != FORMAT or meta.get("fingerprint") != self.key:
            return []
        parts: dict[int, dict[str, torch.Tensor]] = {}
        for key, t in tensors.items():
            start, _, name = key.partition(":")
            parts.setdefault(int(start), {})[name] = t
        return sorted(parts.items())

    def save(self, parts: Parts, force: bool = False) -> None:
        """Write ``parts`` atomically when ``every_s`` seconds have passed since the last write (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._saved_at < self.every_s:
            return
        tensors = {f"{start}:{name}": t.clone() for start, out in parts for name, t in out.items()}  # no shared storage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(tensors, self.path, {"format": FORMAT, "fingerprint": self.key})
        self._saved_at = now

    def remove(self) -> None:
        """The evaluation ended: its state is no longer needed."""
        self.path.unlink(missing_ok=True)
