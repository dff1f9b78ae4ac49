"""Lint and type checks as tests: `ruff check src tests experiments benchmarks` and `mypy src`, configured in pyproject.toml.

Each runs the tool installed beside the interpreter running the tests (the `test` extra installs both);
a test skips, saying so, only when its tool is not installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m NAME ARGS`` in ``cwd`` with this interpreter; skip when NAME is not installed."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")
    return subprocess.run([sys.executable, "-m", name, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_in_src_tests_experiments_and_benchmarks():
    proc = tool("ruff", "check", "--no-cache", "src", "tests", "experiments", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_nothing_in_src():
    proc = tool("mypy", "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checks_see_a_finding(tmp_path):
    """The configuration in pyproject.toml still reports something: an unused import, a wrong type."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nx: int = 'one'\n")
    config = str(ROOT / "pyproject.toml")
    ruff = tool("ruff", "check", "--no-cache", "--config", config, str(bad), cwd=tmp_path)
    assert ruff.returncode == 1 and "F401" in ruff.stdout, ruff.stdout + ruff.stderr
    mypy = tool("mypy", "--config-file", config, "--no-incremental", str(bad), cwd=tmp_path)
    assert mypy.returncode == 1 and "[assignment]" in mypy.stdout, mypy.stdout + mypy.stderr
