"""Progress bars and log lines for long work: bars on a terminal only, plain lines everywhere.

A progress bar (rich) shows what runs, how far it is, its rate (items per
second) and the time left. It is drawn only when stderr is a terminal and
``CLASSWISE_PROGRESS`` is not "0", so slurm and nohup logs get no control
characters and no blank lines; what they get instead are the one-line records
of :func:`log_line` (one per training epoch), which also go to a log file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]


def _enabled() -> bool:
    return os.environ.get("CLASSWISE_PROGRESS", "1") != "0" and sys.stderr.isatty()


def _rate_column(unit: str) -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        """Items per second of the task, e.g. "412.3 img/s"."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.1f} {unit}/s")

    return Rate()


def _advance_nothing(n: int = 1) -> None:
    """No bar: nothing to advance."""


def _advance_name_nothing(name: str, n: int = 1) -> None:
    """No bars: nothing to advance."""


@contextmanager
def progress_task(description: str, total: int, enabled: bool = True, unit: str = "it") -> Iterator[Advance]:
    """Yield ``advance(n)``; draws a rich progress bar with its rate while the block runs (terminals only)."""
    if not (enabled and _enabled()):
        yield _advance_nothing
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _rate_column(unit),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


@contextmanager
def progress_tasks(names: list[str], total: int, enabled: bool = True, unit: str = "img",
                   prefix: str = "", seconds: Mapping[str, float] | None = None) -> Iterator[Callable[[str, int], None]]:
    """One bar per name (e.g. per attack) over ``total`` items; yield ``advance(name, n)``.

    Unknown names are ignored. Bars on terminals only, as :func:`progress_task`;
    off a terminal (nohup, slurm, CI) one log line at the start, one at least
    every ``LOG_EVERY_S`` seconds with the share done and the time left, and at
    the end one line per name with the seconds ``seconds`` holds for it by then
    (the caller's clock of each task), then the total (:func:`_logged_tasks`).
    """
    if not enabled or os.environ.get("CLASSWISE_PROGRESS", "1") == "0":
        yield _advance_name_nothing
        return
    if not sys.stderr.isatty():
        with _logged_tasks(names, total, prefix, seconds) as advance:
            yield advance
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _rate_column(unit),
               TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        tasks = {name: bar.add_task(f"{prefix}{name}", total=total) for name in names}

        def advance_name(name: str, n: int = 1) -> None:
            if name in tasks:
                bar.advance(tasks[name], n)

        yield advance_name


LOG_EVERY_S = 30.0  # seconds between progress lines off a terminal


@contextmanager
def _logged_tasks(names: list[str], total: int, prefix: str,
                  seconds: Mapping[str, float] | None = None) -> Iterator[Callable[[str, int], None]]:
    """Plain progress lines for logs: start, every LOG_EVERY_S seconds (done, elapsed, ETA), each task's time, end."""
    what = f"{prefix}{', '.join(names)}".strip()
    done = dict.fromkeys(names, 0)
    start = last = time.monotonic()
    log_line(f"{what}: {total} images")

    def advance_name(name: str, n: int = 1) -> None:
        nonlocal last
        if name not in done:
            return
        done[name] += n
        now, share = time.monotonic(), min(done.values()) / max(total, 1)
        if now - last >= LOG_EVERY_S and 0 < share < 1:
            last = now
            left = (now - start) * (1 - share) / share
            log_line(f"{what}: {100 * share:.0f}% done, {format_duration(now - start)} elapsed, "
                     f"about {format_duration(left)} left")

    yield advance_name
    for name, took in ((n, seconds.get(n, 0.0)) for n in names) if seconds is not None else ():
        log_line(f"{prefix}{name}: {done[name]} images in {format_duration(took)}")
    log_line(f"{what}: done in {format_duration(time.monotonic() - start)}")


def phase_line(text: str, enabled: bool = True) -> None:
    """One log line naming a phase of long work (``report: writing ...``), off a terminal only.

    On a terminal the bars show what runs; in logs (nohup, slurm, CI) this line
    says what the process is doing between the progress lines of its tasks.
    """
    if enabled and os.environ.get("CLASSWISE_PROGRESS", "1") != "0" and not sys.stderr.isatty():
        log_line(text)


def log_line(text: str) -> str:
    """Print one line (no trailing blank line) to stdout, flushed; return it (for a log file)."""
    line = " ".join(text.split())  # one line, single spaces
    print(line, flush=True)
    return line


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``4:05`` style h:mm:ss or m:ss."""
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
