"""A guard that records every operation which makes a GPU wait for the host.

On CUDA these force a device-to-host synchronisation: reading a value on the
host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()``),
ops whose output size depends on values (``nonzero``, boolean-mask indexing,
``masked_select``, ``unique``, ``bincount``), and ``torch.equal``. The guard
sees them on the CPU as well (a dispatch mode for the ops, patched tensor
methods for the host reads), so the tests can hold GPU code paths to "no host
synchronisation" without a GPU. Imported by the tests, not collected.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.equal, aten.is_nonzero,
             aten.unique_dim, aten._unique, aten._unique2, aten.unique_consecutive, aten.bincount}
_INDEX_OPS = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
_HOST_READS = ("tolist", "numpy", "cpu")


def _bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class _Recorder(TorchDispatchMode):
    def __init__(self, hits: collections.Counter) -> None:
        super().__init__()
        self.hits = hits

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet in _SYNC_OPS or (packet in _INDEX_OPS and _bool_index(args)):
            self.hits[str(func)] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def record_host_syncs(monkeypatch) -> Iterator[collections.Counter]:
    """Count host-synchronising operations run inside the block: op name -> calls."""
    hits: collections.Counter = collections.Counter()
    with monkeypatch.context() as patch:
        for name in _HOST_READS:
            patch.setattr(torch.Tensor, name, _counting(getattr(torch.Tensor, name), f"Tensor.{name}", hits))
        with _Recorder(hits):
            yield hits


def _counting(method, label: str, hits: collections.Counter):
    def wrapper(*args, **kwargs):
        hits[label] += 1
        return method(*args, **kwargs)
    return wrapper


def attack_host_syncs(spec: str, kwargs: dict, every: int, monkeypatch) -> tuple[object, collections.Counter]:
    """(attack, host syncs it made): registry ``spec`` on an untrained small CNN, 16 random MNIST-sized
    images, eps 0.1, compaction every ``every`` steps (0: never)."""
    from attack_models import small_cnn
    from classwise.attacks import create_attack

    torch.manual_seed(0)
    model = small_cnn().eval()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    attack = create_attack(spec, model, 0.1, **kwargs)
    attack.compact_every = every
    with record_host_syncs(monkeypatch) as hits:
        attack(x, y, torch.Generator().manual_seed(0))
    return attack, hits
