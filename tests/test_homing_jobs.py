"""Homing as scheduler jobs: `--no-collect` retrains one class each, `--collect` assembles them.

The contract: retrains run separately (and idempotently) and then collected give the
numbers of the one-shot `classwise homing`; the run's lock is shared by retrains and
exclusive for writers; bad flag combinations are one error line and exit 2.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file

from classwise.analysis import confound_classes, protocol_attack
from classwise.cli import main
from classwise.config import load_config
from classwise.errors import ClasswiseError
from classwise.homing import _start_worker, homing_dir, retrain_one, spread, visible_gpus
from classwise.pipeline import evaluate_run, train_run
from classwise.report.diagnosis import homing_lines
from classwise.runs import LOCK, Run

pytestmark = pytest.mark.usefixtures("one_thread")

# Smaller than the shared TINY run: one epoch on 200 images, 60 test images.
QUICK = ("train.epochs=1", "data.train_examples=200", "train.monitor_examples=20", "eval.examples=60")


@pytest.fixture(scope="module")
def parent(tmp_path_factory, tiny_overrides):
    """An evaluated tiny run and the (up to) two confound classes its headline attack flips most into."""
    folder = tmp_path_factory.mktemp("homing_jobs") / "run"
    train_run(load_config("demo", (*tiny_overrides, *QUICK)), folder, progress=False)
    evaluate_run(folder, progress=False)
    res = Run(folder).results()
    attack = protocol_attack(res.attacks, res.facts)
    flips = confound_classes(res.labels, res.adv_pred[attack], res.num_classes)
    assert flips, "the tiny model should flip some test examples"
    return folder, sorted(flips, key=lambda j: -int((res.adv_pred[attack] == j).sum()))[:2]


def _copy(parent, tmp_path, name: str):
    return shutil.copytree(parent, tmp_path / name, ignore=shutil.ignore_patterns("homing"))


@contextmanager
def _flock(path, how: int):
    """Hold an OS lock on ``path`` from a separate open file (as another process would)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _weights(run, j: int) -> dict[str, torch.Tensor]:
    return load_file(homing_dir(run, j) / "checkpoints" / "last.safetensors")


def test_partial_collect_says_what_is_missing_and_retrains_are_idempotent(parent, tmp_path, capsys, monkeypatch):
    import classwise.homing as homing

    folder, classes = parent
    run, listed = _copy(folder, tmp_path, "partial"), ",".join(map(str, (*classes, 9 - classes[0])))
    monkeypatch.setattr(homing, "report_run", lambda path: None)  # figures: covered by test_homing.py
    monkeypatch.setattr(homing.figures, "plot_homing", lambda *a, **k: None)
    assert main(["homing", str(run), "--classes", str(classes[0]), "--no-collect", "-q"]) == 0
    assert f"retrain without class {classes[0]}: trained" in capsys.readouterr().out
    ckpt = homing_dir(run, classes[0]) / "checkpoints" / "last.safetensors"
    before = ckpt.stat().st_mtime_ns
    assert main(["homing", str(run), "--classes", str(classes[0]), "--no-collect", "-q"]) == 0
    assert ": skipped" in capsys.readouterr().out and ckpt.stat().st_mtime_ns == before

    assert main(["homing", str(run), "--collect", "--classes", listed]) == 0
    missing = sorted({*classes[1:], 9 - classes[0]})
    assert f"missing retrains: {', '.join(f'{j} (not started)' for j in missing)}" in capsys.readouterr().out
    record = json.loads((run / "homing" / "homing.json").read_text())
    assert record["removed"] == classes[:1] and record["missing"] == missing
    assert record["per_removed"][0]["flipped"] > 0 and Run(run).state == "homing"  # report_run patched out
    assert "homing is partial" in " ".join(homing_lines(record))


@pytest.mark.slow
def test_separate_retrains_then_collect_equal_one_shot(parent, tmp_path, capsys):
    """Two `--no-collect` jobs, then `--collect`: the one-shot run's weights, homing.json and summary."""
    folder, classes = parent
    one_shot, jobs = _copy(folder, tmp_path, "one_shot"), _copy(folder, tmp_path, "jobs")
    listed = ",".join(map(str, classes))
    assert main(["homing", str(one_shot), "--classes", listed, "-q"]) == 0
    for j in reversed(classes):
        assert main(["homing", str(jobs), "--classes", str(j), "--no-collect", "-q"]) == 0
    assert main(["homing", str(jobs), "--collect", "--classes", listed]) == 0
    assert "missing" not in capsys.readouterr().out

    for j in classes:  # same process, same threads: the very same arithmetic
        a, b = _weights(one_shot, j), _weights(jobs, j)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read = lambda run, name: json.loads((run / name).read_text())  # noqa: E731
    assert read(jobs, "homing/homing.json") == read(one_shot, "homing/homing.json")
    assert read(jobs, "summary.json")["homing"] == read(one_shot, "summary.json")["homing"]
    assert read(jobs, "homing/homing.json")["missing"] == [] and Run(jobs).state == "complete"


def test_retrains_share_the_run_lock_and_writers_are_refused(parent, tmp_path, capsys):
    folder, classes = parent
    run = Run(_copy(folder, tmp_path, "locks"))
    with _flock(run.path / LOCK, fcntl.LOCK_SH):  # a retrain job elsewhere holds the run shared
        with run.shared_lock():  # another retrain may join
            pass
        with pytest.raises(ClasswiseError, match="read by running homing retrains"):
            with run.lock():
                pass
        assert main(["homing", str(run.path), "--collect"]) == 2
        assert "read by running homing retrains" in capsys.readouterr().err
    with _flock(run.path / LOCK, fcntl.LOCK_EX):  # someone rewrites the run: retrains wait
        with pytest.raises(ClasswiseError, match="being written by"):
            with run.shared_lock():
                pass
        assert main(["homing", str(run.path), "--classes", str(classes[0]), "--no-collect", "-q"]) == 2
    assert not homing_dir(run.path, classes[0]).exists()


def test_a_second_process_on_the_same_class_is_refused(parent, tmp_path):
    folder, classes = parent
    run = _copy(folder, tmp_path, "same_class")
    sub = homing_dir(run, classes[0])
    sub.mkdir(parents=True)
    with _flock(sub / LOCK, fcntl.LOCK_EX):  # the retrain of this class is running in another process
        with pytest.raises(ClasswiseError, match="being written by"):
            retrain_one(str(run), classes[0], "last")
    assert [p.name for p in sub.iterdir()] == [LOCK]  # nothing written into the busy folder


def test_homing_job_flags_bad_combinations(parent, capsys):
    folder, _ = parent
    for argv in (["--collect", "--no-collect"], ["--collect", "--jobs", "2"], ["--no-collect", "--classes", "10"],
                 ["--collect", "--classes", "10"], ["--no-collect", "--classes=-1"], ["--no-collect", "--jobs", "0"],
                 ["--collect", "--classes", "0,1"]):  # the last: no retrain is complete in this run
        capsys.readouterr()
        assert main(["homing", str(folder), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, argv
    assert not (folder / "homing").exists()


def test_jobs_spread_one_per_gpu_else_over_cores(monkeypatch):
    assert spread(4, 10, ["0", "1"], 16) == (["0", "1"], 8)  # one worker per visible GPU
    assert spread(8, 3, ["0", "1", "2", "3"], 16) == (["0", "1", "2"], 5)  # no idle worker
    assert spread(2, 10, [], 16) == ([None, None], 8)
    assert spread(4, 3, [], 2) == ([None, None, None], 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"]  # entries of the parent's own list, not 0 and 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]
    slots: queue.Queue = queue.Queue()
    slots.put("5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    asked: list[int] = []
    monkeypatch.setattr("classwise.homing.die_with_parent", asked.append)  # not on the test process itself
    _start_worker(slots, 1, 4242)  # what each pool worker does first
    assert asked == [4242]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5" and torch.get_num_threads() == 1
