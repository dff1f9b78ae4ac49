"""Optional TensorBoard scalars mirror the per-epoch class-wise metrics."""

from __future__ import annotations

import json

import pytest

from classwise.cli import main
from classwise.train.tensorboard import scalars


def test_scalars_flatten_a_metrics_line_class_by_class():
    record = {"epoch": 3, "lr": 0.1, "train_loss": 1.5, "time_s": 9.0,
              "clean": {"overall": 90.0, "per_class": [95.0, 85.0]},
              "robust": {"overall": 50.0, "per_class": [60.0, None]}}
    assert scalars(record, ["cat", "dog"]) == {
        "train/lr": 0.1, "train/train_loss": 1.5, "clean/overall": 90.0, "clean_class/cat": 95.0,
        "clean_class/dog": 85.0, "robust/overall": 50.0, "robust_class/cat": 60.0}


def test_training_writes_per_class_scalars(tmp_path, tiny_overrides):
    pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    assert main(["train", "--out", str(run), "-q", *sets, "--set", "train.tensorboard=true"]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"robust_class/{k}" for k in range(10)} <= tags and "clean/overall" in tags
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    robust3 = [e.value for e in events.Scalars("robust_class/3")]
    assert robust3 == pytest.approx([r["robust"]["per_class"][3] for r in lines])
