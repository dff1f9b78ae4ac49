"""Atomic file writes (a temporary file in the same folder, then ``os.replace``) and JSON files.

A reader (or a crash) never sees a half-written figure, table or report. The
temporary file is opened normally (not ``mkstemp``), so it gets the usual
permissions under the user's umask. A full disk, a read-only folder or missing
permissions become one :class:`ClasswiseError` naming the path (:func:`user_os_error`).
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ClasswiseError

# OSErrors that are the user's to fix (space, permissions), not bugs, by errno.
USER_OS_ERRORS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied", errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}


def user_os_error(error: OSError, path: str | os.PathLike | None = None) -> ClasswiseError | None:
    """One clear error for a full disk or an unwritable path; None for other OSErrors."""
    reason = USER_OS_ERRORS.get(error.errno or 0)
    if reason is None:
        return None
    where = path if path is not None else (error.filename or "a file")
    return ClasswiseError(f"cannot write {where}: {reason}; free some space or choose a writable folder")


@contextmanager
def user_os_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk or an unwritable ``path`` inside the block into :func:`user_os_error`."""
    try:
        yield
    except OSError as e:
        mapped = user_os_error(e, path)
        if mapped is None:
            raise
        raise mapped from e


def refuse_links(path: Path) -> None:
    """One error when ``path`` or its folder is a symbolic link: classwise never writes through a link.

    A link planted in a run folder (``tables/`` -> a user's folder, a log -> a
    user's file) would otherwise have classwise replace or append to a file it
    did not write.
    """
    path = Path(path)
    for p in (path, path.parent):
        if p.is_symlink():
            raise ClasswiseError(f"refusing to write {path}: {p} is a symbolic link (classwise never writes "
                                 "through links); remove the link")


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block exits without error (never through a link)."""
    path = Path(path)
    refuse_links(path)
    if path.is_dir():
        raise ClasswiseError(f"cannot write {path}: a folder is in its place (classwise never replaces a folder); "
                             "move it away")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with user_os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
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


def read_json(path: Path) -> dict:
    """A JSON file's object (every JSON file of a run holds one), or one clear error naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ClasswiseError(f"cannot read {path}: {e}") from e
    except RecursionError:  # [[[[...]]]] nested deeper than Python's stack
        raise ClasswiseError(f"cannot read {path}: it is damaged (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ClasswiseError(f"{path} is damaged: expected an object (a JSON object {{...}}), got a {type(data).__name__}")
    return data


def append_text(path: Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` and flush it to disk; never through a symbolic link."""
    refuse_links(path)
    with user_os_errors(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with open(fd, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk."""
    append_text(path, json.dumps(record) + "\n")


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
        except RecursionError:  # nested deeper than Python's stack: damaged, not torn
            record = None
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # torn by a crash while appending
                break
            record = None
        if not isinstance(record, dict):
            raise ClasswiseError(f"{path} is damaged: line {i + 1} is not a JSON object; restore or delete the file")
        records.append(record)
    return records
