"""Command-line arguments shared by the CLI tests (imported, not collected)."""

from __future__ import annotations

from collections.abc import Iterable


def sets(overrides: Iterable[str]) -> list[str]:
    """``--set KEY=VALUE`` pairs for each override: ("a=1", "b=2") -> ["--set", "a=1", "--set", "b=2"]."""
    return [item for o in overrides for item in ("--set", o)]
