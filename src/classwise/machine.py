"""What this process may use of the machine: the one place that counts CPUs.

Torch threads (:func:`classwise.perf.set_threads`), DataLoader workers
(:mod:`classwise.data.streaming`) and homing's parallel retrains all size
themselves by :func:`available_cpus`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cpus() -> int:
    """CPUs this process may run on: ``len(os.sched_getaffinity(0))``, else ``os.cpu_count()`` (else 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def die_with_parent(parent: int) -> None:
    """End this worker process when its parent ``parent`` (a pid) dies, even by SIGKILL.

    Linux: prctl(PR_SET_PDEATHSIG, SIGKILL); if the parent died before that
    request, exit now. Elsewhere nothing (no such kernel feature). Called at the
    start of homing's pool workers and DataLoader workers, so that no worker
    outlives a killed ``classwise`` command.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)
