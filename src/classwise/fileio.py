"""Atomic file writes (a temporary file in the same folder, then ``os.replace``) and JSON files.

A reader (or a crash) never sees a half-written figure, table or report. The
temporary file is opened normally (not ``mkstemp``), so it gets the usual
permissions under the user's umask.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ClasswiseError


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block exits without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_open(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, atomically."""
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's content, or one clear error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClasswiseError(f"cannot read {path}: {e}") from e


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """All complete JSON lines of ``path`` ([] when absent); a torn last line is dropped."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records
