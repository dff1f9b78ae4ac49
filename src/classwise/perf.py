"""Speed options shared by training and evaluation: CPU threads, memory format, autocast, compile.

- CPU threads (:func:`set_threads`, the CLI's ``--threads N``): by default the
  CPUs this process may run on (``os.sched_getaffinity``, which honours
  ``taskset`` and container CPU sets), or ``OMP_NUM_THREADS`` when set (torchrun
  sets it to 1 for several processes per node). Torch's own default counts
  the machine's cores, which oversubscribes a shared or restricted machine
  (on a busy 2-core machine here it ran 4.5x slower than one thread).

No option changes numbers beyond rounding:

- ``channels_last``: model weights and input batches in NHWC memory format
  (faster convolutions on tensor-core GPUs); by default (None) on for CUDA
  devices and off on CPUs.
- ``amp="bf16"`` (off by default): forward passes under ``torch.autocast(dtype=torch.bfloat16)``
  (training, training attacks, evaluation attacks); backward passes and the
  optimiser stay in float32, and no loss scaling is needed for bf16.
- ``compile`` (off by default): ``nn.Module.compile()`` in place, so the module keeps its
  class, attributes (``model.head``) and state_dict keys (checkpoints unchanged).

Every function here works on CPU too (bf16 autocast included), so the GPU code
path is the one the tests run.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .machine import available_cpus
from torch import nn

from .config import PerfConfig
from .errors import ClasswiseError

MAX_THREADS = 1024  # torch's thread pool: 100000 threads exhaust memory maps and crash (SIGSEGV)

def default_threads() -> int:
    """Torch CPU threads when none are asked for: ``OMP_NUM_THREADS`` if set to N >= 1, else :func:`available_cpus`."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(int(text), MAX_THREADS) if text.isdigit() and int(text) >= 1 else available_cpus()


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads to ``threads`` (None: :func:`default_threads`); returns the number set.

    Raises :class:`~classwise.errors.ClasswiseError` outside [1, ``MAX_THREADS``] (torch cannot map
    the stacks of 100000 threads and crashes).
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ClasswiseError(f"--threads must be an integer in [1, {MAX_THREADS}], got {threads}")
    n = default_threads() if threads is None else threads
    torch.set_num_threads(n)
    return n


def prepare_model(model: nn.Module, perf: PerfConfig | None) -> nn.Module:
    """Apply ``perf`` to ``model`` in place (idempotent) and return it.

    Call after moving the model to its device and before building the optimiser.
    """
    if perf is None:
        return model
    if channels_last_on(perf, _device_of(model)):
        model.to(memory_format=torch.channels_last)
    if perf.compile and getattr(model, "_compiled_call_impl", None) is None:
        model.compile()
    return model


def prepare_input(x: torch.Tensor, perf: PerfConfig | None) -> torch.Tensor:
    """x (B, C, H, W) in the memory format of ``perf`` (values unchanged)."""
    if x.dim() != 4 or not channels_last_on(perf, x.device):
        return x
    return x.contiguous(memory_format=torch.channels_last)


def channels_last_on(perf: PerfConfig | None, device: torch.device) -> bool:
    """Whether ``perf`` puts weights and batches on ``device`` in NHWC (None: on CUDA only)."""
    if perf is None:
        return False
    return device.type == "cuda" if perf.channels_last is None else perf.channels_last


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return torch.device("cpu") if first is None else first.device


def autocast(perf: PerfConfig | None, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bf16 on ``device`` when ``perf.amp == "bf16"``, else a no-op."""
    if perf is None or perf.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
