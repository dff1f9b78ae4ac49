"""Progress bars for long work (rich), silent when asked or when not on a terminal."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _enabled() -> bool:
    return os.environ.get("CLASSWISE_PROGRESS", "1") != "0"


@contextmanager
def progress_task(description: str, total: int, enabled: bool = True) -> Iterator[Advance]:
    """Yield ``advance(n)``; draws a rich progress bar while the block runs."""
    if not (enabled and _enabled()):
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
