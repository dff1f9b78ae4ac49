"""Resume at any moment: a run killed with SIGKILL mid-epoch ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

import classwise
from classwise.errors import ClasswiseError
from classwise.runs import Run
from classwise.checkpoint import load_state

# 30 batches per epoch, dropout on, PGD training, per-batch lr schedule, class weights
# (objective tally), a checkpoint after every batch.
OVERRIDES = (
    "data.train_examples=600",
    "train.epochs=2",
    "train.batch_size=20",
    "train.schedule=cyclic",
    "train.class_weight_gamma=1",
    "train.attack={name: pgd2, eps: 0.3, step_size: 0.15}",
    "train.monitor={name: pgd2, eps: 0.3, step_size: 0.15}",
    "train.monitor_examples=50",
    "train.checkpoint_every=1",
)
ENV = {"CLASSWISE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
       "PYTHONPATH": str(Path(classwise.__file__).parents[1])}  # the source under test, as the parent process


def start(run: Path, *extra: str) -> subprocess.Popen:
    sets = [item for o in OVERRIDES for item in ("--set", o)]
    args = ["--resume"] if "--resume" in extra else [*sets, *extra]
    return subprocess.Popen([sys.executable, "-m", "classwise", "train", "--out", str(run), "-q", *args],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def position(run: Path) -> tuple[int, int]:
    """(epochs finished, batches done in the next epoch) of the run's state file; (-1, -1) if none."""
    try:
        state = load_state(run / "checkpoints" / "last.state.safetensors")
    except ClasswiseError:
        return -1, -1
    return int(state["epoch"]), int(state.get("batch", 0))


def kill_at(proc: subprocess.Popen, run: Path, epoch: int, batch: int, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` once its state file shows ``epoch`` finished epochs and >= ``batch`` batches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        e, b = position(run)
        if e == epoch and b >= batch:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-epoch (exit {proc.returncode}): {proc.stderr.read()}"


def metrics(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time_s", "train_s", "cpu_s")} for r in lines]  # times differ


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = start(straight, "--set", "train.checkpoint_every=0")  # runs beside the killed one
    kill_at(start(killed), killed, epoch=0, batch=7)  # in epoch 1
    assert position(killed)[0] == 0 and not (killed / "metrics.jsonl").exists()
    kill_at(start(killed, "--resume"), killed, epoch=1, batch=11)  # in epoch 2
    stray = killed / "checkpoints" / ".last.state.safetensors.1.deadbeef.tmp"  # as a kill mid-write leaves
    stray.write_bytes(b"partial")
    final = start(killed, "--resume")
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    a = load_file(straight / "checkpoints" / "last.safetensors")
    b = load_file(killed / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert metrics(killed) == metrics(straight) and len(metrics(killed)) == 2
    assert Run(killed).state == "trained" and not stray.exists()
    assert position(killed) == (2, 0)


@pytest.mark.slow  # ~15 s; the Ctrl-C path it shares stays in the default run (tests/test_runs.py)
def test_sigterm_is_handled_like_ctrl_c_and_the_run_resumes(tmp_path):
    """SIGTERM (timeout, slurm, kubernetes): status "interrupted" naming it, exit 143, then --resume finishes."""
    run = tmp_path / "run"
    proc = start(run)
    deadline = time.monotonic() + 120
    while position(run) < (0, 3) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, proc.stderr.read()
    assert "interrupted (SIGTERM)" in proc.stderr.read()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["error"] == "interrupted (SIGTERM)"
    final = start(run, "--resume")
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert Run(run).state == "trained" and position(run) == (2, 0)


@pytest.mark.slow  # ~17 s; the evaluation state's resume is held in the default run by tests/test_evalstate.py
def test_sigkill_mid_evaluation_then_the_same_command_continues(tmp_path, tiny_overrides):
    """A killed evaluation keeps its finished batches (.evaluation/); rerun, it ends with the uninterrupted results."""
    import shutil

    from classwise.cli import main
    from classwise.results import EvalResults

    trained = tmp_path / "trained"
    sets = [item for o in tiny_overrides for item in ("--set", o)]
    assert main(["train", "--out", str(trained), "-q", *sets]) == 0
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    shutil.copytree(trained, straight)
    shutil.copytree(trained, killed)
    args = ["--attacks", "fgsm,pgd10", "--eps", "0.3", "--batch-size", "50", "-q"]
    assert main(["evaluate", str(straight), *args]) == 0
    env = ENV | {"CLASSWISE_EVAL_STATE_EVERY_S": "0"}
    cmd = [sys.executable, "-m", "classwise", "evaluate", str(killed), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not list((killed / ".evaluation").glob("*.safetensors")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the evaluation ended before it could be killed"
    assert not (killed / "results.npz").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "evaluation: continuing an interrupted run" in rerun.stdout
    a, b = EvalResults.load(straight / "results.npz"), EvalResults.load(killed / "results.npz")
    assert a.adv_pred.keys() == b.adv_pred.keys()
    assert all(np.array_equal(a.adv_pred[k], b.adv_pred[k]) for k in a.adv_pred)
    assert np.array_equal(a.clean_pred, b.clean_pred) and not list((killed / ".evaluation").glob("*"))
