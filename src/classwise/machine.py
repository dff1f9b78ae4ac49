"""What this process may use of the machine: the one place that counts CPUs.

Torch threads (:func:`classwise.perf.set_threads`), DataLoader workers
(:mod:`classwise.data.streaming`) and homing's parallel retrains all size
themselves by :func:`available_cpus`.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on: ``len(os.sched_getaffinity(0))``, else ``os.cpu_count()`` (else 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)
