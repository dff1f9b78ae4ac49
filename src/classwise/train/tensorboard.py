"""Optional TensorBoard scalars: the epoch's metrics line, class by class.

Enabled by ``train.tensorboard: true``; events go to ``<run>/tensorboard``. The
metrics.jsonl line stays the record; this only mirrors it for TensorBoard users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClasswiseError
from ..fileio import record_written

EVENTS = "events.out.tfevents.*"  # the event files TensorBoard's writer names


def scalars(record: dict[str, Any], class_names: list[str]) -> dict[str, float]:
    """Flat tag -> value of one metrics line: train numbers, then clean/robust overall and per class."""
    out = {f"train/{k}": float(v) for k, v in record.items()
           if k in ("lr", "train_loss", "train_acc", "train_eps") and v is not None}
    for part in ("clean", "robust"):
        block = record.get(part) or {}
        if block.get("overall") is not None:
            out[f"{part}/overall"] = float(block["overall"])
        for name, value in zip(class_names, block.get("per_class", [])):
            if value is not None:
                out[f"{part}_class/{name}"] = float(value)
    return out


def write_scalars(log_dir: Path, record: dict[str, Any], class_names: list[str]) -> None:
    """Append the epoch's scalars to the event files in ``log_dir`` (the run's ``RunFiles.tensorboard``;
    needs the tensorboard package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ClasswiseError("train.tensorboard needs the tensorboard package: pip install tensorboard") from e
    before = set(Path(log_dir).glob(EVENTS)) if Path(log_dir).is_dir() else set()
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for tag, value in scalars(record, class_names).items():
            writer.add_scalar(tag, value, global_step=int(record["epoch"]))
    for path in set(Path(log_dir).glob(EVENTS)) - before:  # the writer's new event file, classwise's from now on
        record_written(path)
