"""Homing experiment end to end on a tiny budget: retrain without confound classes, resume, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classwise.cli import main
from classwise.config import load_config
from classwise.errors import ClasswiseError
from classwise.homing import homing_dir, homing_run, retrain_all, retrain_config
from classwise.pipeline import evaluate_run, train_run
from classwise.runs import load_run_data
from classwise.fileio import read_jsonl
from classwise.runs import Run
from classwise.train.loop import Trainer

REMOVED = (0, 9)  # the tiny run flips most examples into 0, some into 9


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_overrides):
    folder = tmp_path_factory.mktemp("homing") / "run"
    train_run(load_config("demo", tiny_overrides), folder, progress=False)
    evaluate_run(folder, progress=False)
    return folder


def _interrupt_second_retrain(monkeypatch, j: int) -> None:
    """Make the retrain without class j crash after its first epoch (its checkpoint is written)."""
    original = Trainer._train_epoch

    def crashing(self, x, y):
        if self.run_dir.name == f"class_{j}" and self.epoch == 1:
            raise RuntimeError("simulated interruption")
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_epoch", crashing)


def test_remove_class_config_drops_only_that_class(run):
    base = load_config(run / "config.yaml")
    cfg = retrain_config(base, 9)
    full, cut = load_run_data(base), load_run_data(cfg)
    assert cfg.data.remove_class == 9 and cfg.seed == base.seed and cfg.train == base.train
    assert int((cut.train_y == 9).sum()) == 0 and cut.num_classes == full.num_classes == 10
    keep = full.train_y != 9
    assert np.array_equal(cut.train_y.numpy(), full.train_y[keep].numpy())  # same examples of the others
    assert np.array_equal(cut.test_y.numpy(), full.test_y.numpy())
    with pytest.raises(ClasswiseError, match="remove_class"):
        load_config("demo", ["data.remove_class=-1"])
    with pytest.raises(ClasswiseError, match="out of range"):
        load_run_data(load_config("demo", ["data.remove_class=10"]))


@pytest.mark.slow  # ~15 s of retraining
def test_homing_interrupted_then_resumed_then_skipped(run, monkeypatch):
    j1, j2 = REMOVED
    _interrupt_second_retrain(monkeypatch, j2)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        homing_run(run, classes=[j1, j2], progress=False)
    assert Run(homing_dir(run, j1)).state == "trained"
    assert Run(homing_dir(run, j2)).state == "failed"
    assert len(read_jsonl(homing_dir(run, j2) / "metrics.jsonl")) == 1
    monkeypatch.undo()

    first_ckpt = homing_dir(run, j1) / "checkpoints" / "last.safetensors"
    before = first_ckpt.stat().st_mtime_ns
    record = homing_run(run, classes=[j1, j2], progress=False)
    assert first_ckpt.stat().st_mtime_ns == before  # complete retrain skipped
    assert [r["epoch"] for r in read_jsonl(homing_dir(run, j2) / "metrics.jsonl")] == [1, 2]  # resumed
    assert Run(homing_dir(run, j2)).state == "trained" and Run(run).state == "complete"
    _check_record(record, run)

    # Everything done: a parallel rerun (spawned workers) skips both and gives the same numbers.
    assert retrain_all(run, list(REMOVED), "last", jobs=2) == {j1: "skipped", j2: "skipped"}
    assert first_ckpt.stat().st_mtime_ns == before


def _check_record(record: dict, run) -> None:
    m = np.array(record["misclassified"])
    h = np.array([[np.nan if v is None else v for v in row] for row in record["homing"]], dtype=float)
    assert record["removed"] == list(REMOVED) and record["attack"] == "pgd5"
    assert np.all(np.diag(m) == 0) and np.all(np.isnan(h[:, [1, 2, 3, 4, 5, 6, 7, 8]]))
    assert np.all(h[:, list(REMOVED)] <= m[:, list(REMOVED)])
    assert record["flipped"] == int(m[:, list(REMOVED)].sum()) > 0
    assert record["homed"] == int(np.nansum(h))
    assert record["share"] == pytest.approx(record["homed"] / record["flipped"])
    assert json.loads((run / "homing" / "homing.json").read_text()) == record
    for name in ("homing/homing.csv", "homing/misclassified.csv", "homing/homing.png", "figures/homing.png",
                 "tables/homing.csv"):
        assert (run / name).is_file(), name
    md = (run / "report.md").read_text()
    assert "## Homing: retraining without the confound class (figure 3)" in md and "keeps all K outputs" in md
    assert f"homing (pgd5): {100 * record['share']:.1f}%" in md
    summary = json.loads((run / "summary.json").read_text())
    assert summary["homing"]["homed"] == record["homed"]


def test_homing_cli_bad_input(run):
    assert main(["homing", str(run), "--classes", "a,b"]) == 2
    assert main(["homing", str(run), "--classes", "10"]) == 2
    assert main(["homing", str(run), "--attack", "nope"]) == 2
    assert main(["homing", str(run), "--jobs", "0"]) == 2


@pytest.mark.slow
def test_parallel_retrains_match_serial(tmp_path, tiny_overrides):
    """Two retrains in two spawned processes give the same weights as in this process (CPU)."""
    from safetensors.torch import load_file

    folder = tmp_path / "run"
    train_run(load_config("demo", (*tiny_overrides, "train.epochs=1")), folder, progress=False)
    assert retrain_all(folder, [3, 5], "last", jobs=2) == {3: "trained", 5: "trained"}
    serial = tmp_path / "serial"
    train_run(retrain_config(load_config(folder / "config.yaml"), 5), serial, progress=False)
    a, b = (load_file(p / "checkpoints" / "last.safetensors") for p in (homing_dir(folder, 5), serial))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in a)
