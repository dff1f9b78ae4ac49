"""The run folder: creation rules, status, JSON files written atomically.

Layout::

    run/config.yaml            resolved config
    run/version.json           classwise version and git commit
    run/status.json            {"state": "training" | "trained" | "evaluating" | "complete" | "failed"}
    run/metrics.jsonl          one JSON line per epoch (class-wise clean and robust accuracy)
    run/checkpoints/*.safetensors
    run/results.npz            per-sample results
    run/summary.json           headline numbers (written last, with the report)
    run/figures/ run/tables/ run/report.md run/report.html

A run is complete only when status.json says so; a crash leaves another state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ClasswiseError
from .fileio import atomic_write

MARKERS = ("config.yaml", "status.json")


def prepare_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create ``path`` for a new run, or accept it for ``resume``; refuse silent reuse."""
    path = Path(path)
    exists = path.exists() and any(path.iterdir())
    if resume and overwrite:
        raise ClasswiseError("--resume and --overwrite exclude each other")
    if resume and not (path / "config.yaml").is_file():
        raise ClasswiseError(f"cannot resume: {path} is not a classwise run folder (no config.yaml)")
    if exists and not resume:
        if not overwrite:
            raise ClasswiseError(f"run folder {path} already exists: pass --resume to continue it or --overwrite to replace it")
        if not any((path / m).exists() for m in MARKERS):
            raise ClasswiseError(f"refusing to overwrite {path}: it is not a classwise run folder")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "checkpoints").mkdir(exist_ok=True)
    return path


def require_run_dir(path: str | Path) -> Path:
    """An existing run folder (has config.yaml), or one clear error."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ClasswiseError(f"{path} is not a classwise run folder (no config.yaml); train one with `classwise train`")
    return path


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, atomically."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ClasswiseError(f"cannot read {path}: {e}") from e


def set_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Record the run's state; only "complete" means every result is written."""
    write_json(Path(run_dir) / "status.json", {"state": state, **extra})


def get_status(run_dir: Path) -> str:
    path = Path(run_dir) / "status.json"
    return read_json(path).get("state", "unknown") if path.is_file() else "unknown"


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """All complete JSON lines of ``path`` ([] when absent); a torn last line is dropped.

    Any other line that is not a JSON object is one clear error naming the file and line.
    """
    if not Path(path).is_file():
        return []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ClasswiseError(f"cannot read {path}: {e}") from e
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn by a crash while appending
                break
            record = None
        if not isinstance(record, dict):
            raise ClasswiseError(f"{path} is damaged: line {i + 1} is not a JSON object; restore or delete the file")
        records.append(record)
    return records


def version_info() -> dict[str, str | None]:
    """classwise version and the git commit of the source tree, when known."""
    try:
        src = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"classwise": __version__, "git_commit": commit or None}
