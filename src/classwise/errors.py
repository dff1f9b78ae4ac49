"""The one exception type the CLI turns into a single clear error line, and "did you mean" help."""

from __future__ import annotations

from collections.abc import Iterable


class ClasswiseError(Exception):
    """A user-facing error: bad input, missing files, refused overwrite.

    The CLI prints ``error: <message>`` and exits with status 2. Library code
    raises it (or ``ValueError`` for argument checks) instead of printing.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, slurm and kubernetes send), handled as Ctrl-C is: status "interrupted", resumable."""


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of ``known`` to ``name`` (difflib), else ""."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> ClasswiseError:
    """The one error for a name that is not registered: suggestion first, then the known names."""
    known = list(known)
    return ClasswiseError(f"unknown {kind} {str(name)!r}{did_you_mean(name, known)}; known: {', '.join(known)}")
