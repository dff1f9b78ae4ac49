"""Checks of the run folder's JSON files as read back: one clear error for a damaged file.

``metrics.jsonl`` and ``meta.json`` are written by classwise, but a user may edit,
truncate or replace them; the report must then refuse with one line naming the
file, never fail deep inside a figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import ClasswiseError

META_KEYS = ("dataset", "model", "checkpoint", "eps", "superclasses", "train_method", "attacks")


def _damaged(path: Path, why: str, fix: str) -> ClasswiseError:
    return ClasswiseError(f"{path} is damaged ({why}); {fix}")


def _is_number(v: Any, nullable: bool = True) -> bool:
    if v is None:
        return nullable
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_metrics(records: list, path: Path, num_classes: int) -> list[dict]:
    """``records`` of metrics.jsonl when every line is an epoch record; else one error naming the line."""
    fix = "restore it, or delete it to report without the per-epoch figure"
    for i, r in enumerate(records, 1):
        if not isinstance(r, dict) or not isinstance(r.get("epoch"), int) or isinstance(r.get("epoch"), bool):
            raise _damaged(path, f"line {i} is not an epoch record with an integer 'epoch'", fix)
        for block in ("clean", "robust"):
            b = r.get(block)
            if b is None:
                continue
            per_class = b.get("per_class") if isinstance(b, dict) else None
            if (not isinstance(per_class, list) or len(per_class) != num_classes
                    or not all(_is_number(v) for v in per_class) or not _is_number(b.get("overall"))):
                raise _damaged(path, f"line {i}: '{block}' is not an overall number and {num_classes} per-class numbers", fix)
    return records


def check_meta(meta: Any, path: Path, num_classes: int | None = None) -> dict:
    """meta.json as a mapping with the keys the report reads, of the right types; else one error."""
    fix = "re-run `classwise evaluate` to rewrite it"
    if not isinstance(meta, dict):
        raise _damaged(path, f"a JSON object was expected, found {type(meta).__name__}", fix)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise _damaged(path, f"no {', '.join(missing)}", fix)
    if not isinstance(meta["checkpoint"], str) or not isinstance(meta["attacks"], dict):
        raise _damaged(path, "'checkpoint' must be a name and 'attacks' a mapping", fix)
    eps = meta["eps"]
    if not (_is_number(eps, False) or (isinstance(eps, dict) and all(_is_number(v, False) for v in eps.values()))):
        raise _damaged(path, "'eps' must be a number or a mapping of attack to number", fix)
    sup = meta["superclasses"]
    k = num_classes if num_classes is not None else math.inf
    if not isinstance(sup, dict) or not all(
            isinstance(v, list) and all(isinstance(c, int) and 0 <= c < k for c in v) for v in sup.values()):
        raise _damaged(path, "'superclasses' must map names to lists of class indices", fix)
    return meta
