"""Atomic file writes (a temporary file in the same folder, then ``os.replace``) and JSON files.

A reader (or a crash) never sees a half-written figure, table or report. The
temporary file is opened normally (not ``mkstemp``), so it gets the usual
permissions under the user's umask. A full disk, a read-only folder or missing
permissions become one :class:`ClasswiseError` naming the path (:func:`user_os_error`).

A folder holding a manifest (:data:`MANIFEST`: a run folder, a ``compare`` output) is
classwise's: every file written beneath it is recorded there (:func:`record_written`,
one relative path a line), a file beneath it that the manifest does not name is never
replaced (:func:`check_replaceable`), and ``--overwrite`` deletes only what it names.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
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


MANIFEST = ".classwise-files"  # every file classwise wrote beneath the folder holding it, one relative path a line
TEMPORARY = re.compile(r"\.[^/]+\.\d+\.[0-9a-f]{8}\.tmp")  # a file name of :func:`atomic_open` in flight
NAME_BYTES = 200  # longest file name made from user input: with a temporary's affixes it stays under 255 bytes


def safe_name(text: str, suffix: str = "", *, keep: str = "_.=@-", room: int = 0) -> str:
    """A file name for ``text`` (an attack spec, a class name, a path): letters, digits and ``keep`` kept, other
    runs of characters ``_``, no leading dot or ``_``; with ``suffix`` at most :data:`NAME_BYTES` - ``room`` bytes
    (``room``: a prefix the caller adds), cut with a hash of ``text`` when longer, so cut names stay apart."""
    name = re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", "_", text).lstrip("._").rstrip("_") or "_"
    limit = NAME_BYTES - room - len(suffix)
    if len(name) <= limit:
        return name + suffix
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[:limit - 17]}-{digest}{suffix}"


def ledger_root(path: Path) -> Path | None:
    """The nearest folder above ``path`` holding a :data:`MANIFEST` (None: no folder of classwise's)."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / MANIFEST).is_file():
            return folder
    return None


def written(root: Path) -> set[str]:
    """Relative paths of the files classwise recorded as written beneath ``root`` (its manifest)."""
    try:
        return set((root / MANIFEST).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as e:
        raise ClasswiseError(f"cannot read {root / MANIFEST} (the record of files classwise wrote): {e}") from e


def start_ledger(folder: Path) -> None:
    """Make ``folder`` classwise's: an empty manifest (kept when there is one)."""
    refuse_links(folder / MANIFEST)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    except OSError as e:
        raise user_os_error(e, folder) or ClasswiseError(f"cannot create {folder}: {e.strerror or e}") from e


def own_folder(folder: Path) -> Path:
    """``folder`` ready for classwise's files outside a run (``compare --out``): inside a folder of classwise's
    already, or new or empty (then marked with a manifest); a folder holding anything else is refused."""
    folder = Path(folder)
    refuse_links(folder / MANIFEST)
    if ledger_root(folder / MANIFEST) is not None:
        return folder
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ClasswiseError(f"refusing to write into {folder}: it holds files classwise did not write (no "
                             f"{MANIFEST}); choose a new or empty folder")
    start_ledger(folder)
    return folder


def record_written(path: Path) -> None:
    """Add ``path`` to the manifest of the folder of classwise's it lies in (if any, and not yet there)."""
    root = ledger_root(path)
    if root is None:
        return
    rel = Path(os.path.abspath(path)).relative_to(root).as_posix()
    if rel not in written(root):
        refuse_links(root / MANIFEST)
        _append(root / MANIFEST, rel + "\n")


def move_written(root: Path, moves: dict[str, str]) -> list[str]:
    """Move files beneath ``root`` (relative path -> new relative path) that its manifest records, and record
    them under their new paths; returns those moved. Unrecorded files stay; an unrecorded target is refused."""
    own = written(root)
    moved = [rel for rel in moves if rel in own and (root / rel).is_file() and not (root / rel).is_symlink()]
    for rel in moved:
        target = root / moves[rel]
        refuse_links(target)
        check_replaceable(target)
        with user_os_errors(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(root / rel, target)
    gone = set(moved)
    kept = [line for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines() if line not in gone]
    new = [moves[rel] for rel in moved]
    tmp = root / f".{MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    with user_os_errors(root / MANIFEST):
        tmp.write_text("".join(line + "\n" for line in [*kept, *new]), encoding="utf-8")
        os.replace(tmp, root / MANIFEST)
    return moved


def check_replaceable(path: Path) -> None:
    """One error when ``path`` exists in a folder of classwise's whose manifest does not name it:
    classwise never replaces or deletes a file it did not write."""
    root = ledger_root(path)
    if root is None or not (os.path.lexists(path)):
        return
    rel = Path(os.path.abspath(path)).relative_to(root).as_posix()
    if rel not in written(root):
        raise ClasswiseError(f"refusing to replace {path}: classwise did not write it (it is not in "
                             f"{root / MANIFEST}); move it away first")


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
    check_replaceable(path)
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
        record_written(path)


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
    check_replaceable(path)
    _append(path, text)
    record_written(path)


def _append(path: Path, text: str) -> None:
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
