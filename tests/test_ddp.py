"""Several processes: ``torchrun --nproc_per_node=2`` (gloo on CPU) trains as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed
import classwise
from safetensors.torch import load_file

from classwise.config import load_config
from classwise.errors import ClasswiseError
from classwise.runs import load_run_data
from classwise.runs import Run
from classwise.train.distributed import Dist
from classwise.train.loop import Trainer

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")

# Standard training, no dropout, SGD, class weights from the previous epoch's (summed) tally:
# the 2-process run must match the 1-process run up to rounding.
STANDARD = (
    "data.train_examples=400",
    "train.epochs=2",
    "train.batch_size=40",
    "train.method=standard",
    "train.optimizer=sgd",
    "train.lr=0.01",
    "model.kwargs={drop: 0}",
    "train.monitor={name: fgsm, eps: 0.3}",
    "train.monitor_examples=50",
    "train.class_weight_gamma=1",
)
ENV = {"CLASSWISE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
       "PYTHONPATH": str(Path(classwise.__file__).parents[1])}  # the source under test


def train(run: Path, overrides: tuple[str, ...], processes: int) -> subprocess.Popen:
    """``classwise train`` in 1 process, or in ``processes`` under torchrun (standalone rendezvous)."""
    launcher = [sys.executable, "-m"] if processes == 1 else [
        str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={processes}", "-m"]
    sets = [item for o in overrides for item in ("--set", o)]
    return subprocess.Popen([*launcher, "classwise", "train", "--out", str(run), "-q", *sets], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # ~14 s (two torchrun launches); the sharded evaluation's equivalence stays in the default run
def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    procs = train(one, STANDARD, 1), train(two, STANDARD, 2)
    out = [finish(p) for p in procs][1]
    assert out.count("trained:") == 1  # rank 0 alone speaks
    m1, m2 = metrics(one), metrics(two)
    assert [r["epoch"] for r in m2] == [1, 2]  # rank 0 alone writes
    for a, b in zip(m1, m2):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5, abs=1e-6)
        assert abs(b["train_acc"] - a["train_acc"]) <= 0.5  # at most two of 400 predictions differ
    assert m2[1]["class_weights"] == pytest.approx(m1[1]["class_weights"], abs=1e-3)
    w1, w2 = load_file(one / "checkpoints" / "last.safetensors"), load_file(two / "checkpoints" / "last.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        np.testing.assert_allclose(w2[k].numpy(), w1[k].numpy(), atol=1e-4, rtol=0, err_msg=k)
    assert Run(two).state == "trained"


@pytest.mark.slow  # 13 s: the default suite is at its 10-minute budget; make test-slow runs it
def test_adversarial_objectives_run_under_ddp(tmp_path):
    """TRADES (two forwards through DDP, its KL attack on the unwrapped module), class
    weights (tally summed over ranks), weight-norm penalty, mid-epoch checkpoints."""
    run = tmp_path / "trades"
    overrides = (*STANDARD[:3], "train.method=trades", "train.attack={name: pgd2, eps: 0.3, step_size: 0.15}",
                 "train.class_weight_gamma=1", "train.weight_norm_penalty=0.1", "train.checkpoint_every=3",
                 "train.monitor={name: fgsm, eps: 0.3}", "train.monitor_examples=50")
    finish(train(run, overrides, 2))
    lines = metrics(run)
    assert [r["epoch"] for r in lines] == [1, 2] and "class_weights" in lines[1]
    assert Run(run).state == "trained"


def test_global_batch_must_split_evenly(tmp_path):
    config = load_config("demo", ["data.train_examples=100", "train.batch_size=41"])
    with pytest.raises(ClasswiseError, match="divisible by the 2 processes"):
        Trainer(config, load_run_data(config), tmp_path, progress=False, dist=Dist(rank=0, world=2))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["frl", "dafa", "wat", "cfa"])
def test_fairness_methods_train_under_ddp_on_the_same_validation_split(tmp_path, method):
    """2 processes: the validation split (seeded by the run, not the rank) is the one 1 process holds out,
    the class weights are measured on it (eval mode, fixed noise: the same on every rank) and logged,
    and mid-epoch checkpoints are written. 1 and 2 processes draw different attack noise, so their
    weights are not compared."""
    overrides = (*STANDARD[:3], f"train.method={method}", "train.attack={name: pgd2, eps: 0.3, step_size: 0.15}",
                 "train.fair.val_examples=50", "train.fair.dafa_warmup=1", "train.checkpoint_every=3",
                 "train.fair.cfa_begin=1", "train.fair.cfa_threshold=0",
                 "train.monitor={name: fgsm, eps: 0.3}", "train.monitor_examples=50")
    two = tmp_path / "two"
    finish(train(two, overrides, 2))
    key = {"frl": "frl_w_bndy", "dafa": "dafa_weights", "wat": "wat_weights", "cfa": "cfa_ccr"}[method]
    lines = metrics(two)
    assert [r["epoch"] for r in lines] == [1, 2] and np.all(np.isfinite(lines[-1][key]))
    config = load_config(two / "config.yaml")
    one = Trainer(config, load_run_data(config), tmp_path / "one", progress=False)
    assert json.loads((two / "validation.json").read_text()) == json.loads((tmp_path / "one" / "validation.json").read_text())
    assert len(one.data.train_y) == 400 - 50 and Run(two).state == "trained"
