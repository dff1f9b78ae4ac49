"""Sharded evaluation (docs/scale.md): N ranks give the per-sample results of one process.

Fast tests run each rank's share in this process, one after the other: rank 1
evaluates its batches and its ``gather`` is recorded (and stops it); rank 0 then
evaluates its batches and gathers rank 1's recorded outputs. That is exactly
what two ``torchrun`` processes exchange. The slow test runs real processes
(``torchrun --nproc_per_node=2``, gloo on CPU) through the command line.

Why equality is exact: a rank computes each of its batches with the batch
shape, data and generator seed (``batch_seed(seed, b)``) the single process
uses for that batch, so on one CPU with one thread the arithmetic is the same
and predictions match bitwise. Where arithmetic can differ (other kernels or
thread counts, GPUs), only examples whose top-two logits are within float
rounding could change class; docs/scale.md states that bound.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed

import classwise
from classwise.attacks import create_attack
from classwise.results import NOT_ATTACKED, EvalResults
from classwise.evaluate import batch_seed, evaluate, gather_parts, shard_starts, zero_gradient_mask

from attack_models import held_out, trained_cnn
from test_attacks import EPS, SPECS

pytestmark = pytest.mark.usefixtures("one_thread")


class _Stop(Exception):
    """Ends rank 1's pass at its gather (its outputs are recorded)."""


class _Rank:
    """A fake rank of a ``world``-process group: rank 1 records what it gathers, rank 0 receives it."""

    def __init__(self, rank: int, world: int, others: list[Any] | None = None) -> None:
        self.rank, self.world, self.others, self.sent = rank, world, others or [], None

    def gather(self, obj: Any) -> list[Any]:
        if self.rank != 0:
            self.sent = obj
            raise _Stop
        return [obj, *self.others]


def two_ranks(run) -> Any:
    """``run(ranks)`` as rank 1 then rank 0 of two processes: rank 0's (gathered) result."""
    one = _Rank(1, 2)
    with pytest.raises(_Stop):
        run(one)
    return run(_Rank(0, 2, [one.sent]))


def test_shard_starts_cover_every_batch_once():
    for n, bs, world in [(40, 8, 2), (41, 8, 3), (5, 8, 2), (0, 4, 2), (100, 7, 4)]:
        starts = [s for r in range(world) for s in shard_starts(n, bs, _Rank(r, world))]
        assert sorted(starts) == list(range(0, n, bs))
    assert list(shard_starts(20, 8)) == [0, 8, 16]


def test_gather_parts_orders_batches_by_start():
    rank0 = [(0, {"a": torch.tensor([0])}), (16, {"a": torch.tensor([2])})]
    rank1 = [(8, {"a": torch.tensor([1])})]
    got = gather_parts(rank0, _Rank(0, 2, [rank1]))
    assert [s for s, _ in got] == [0, 8, 16]
    assert gather_parts(rank0) is rank0


def test_batch_seeds_keep_the_seed_on_batch_zero_and_never_repeat():
    assert batch_seed(7, 0) == 7
    seeds = {batch_seed(0, b) for b in range(10_000)}
    assert len(seeds) == 10_000 and all(0 <= s < 2**63 for s in seeds)


@pytest.fixture(scope="module")
def target():
    """(trained small CNN in eval mode, 40 held-out images in [0, 1], labels)."""
    return (trained_cnn(0), *held_out(40))


def _same(a, b) -> None:
    assert a.attacks == b.attacks and a.facts == b.facts
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.clean_pred, b.clean_pred)
    for name in a.attacks:
        np.testing.assert_array_equal(a.adv_pred[name], b.adv_pred[name], err_msg=name)
    assert a.extras.keys() == b.extras.keys()
    for key in a.extras:
        np.testing.assert_array_equal(a.extras[key], b.extras[key], err_msg=key)


@pytest.mark.parametrize("spec, kwargs", [p.values for p in SPECS], ids=[p.id for p in SPECS])
def test_two_ranks_equal_one_process_for_every_registered_attack(target, spec, kwargs):
    """5 batches of 8 (rank 0: 3, rank 1: 2); fgsm-rs, pgd restarts, nattack, square... draw per batch."""
    model, x, y = target
    if kwargs.get("surrogate") == "trained-surrogate":
        kwargs = kwargs | {"surrogate": trained_cnn(1, steps=30)}
    attacks = {spec: create_attack(spec, model, EPS, **kwargs)}

    def run(ranks):
        return evaluate(model, x, y, attacks, batch_size=8, device="cpu", seed=3, progress=False, zero_grad=False,
                        ranks=ranks)

    _same(run(None), two_ranks(run))


def test_two_ranks_equal_one_process_in_the_cascade(target):
    model, x, y = target

    def run(ranks):
        return evaluate(model, x, y, ["fgsm-rs", "pgd5", "cw-margin5"], eps=EPS, cascade=True, batch_size=8,
                        device="cpu", progress=False, zero_grad=False, ranks=ranks)

    one = run(None)
    assert (one.adv_pred["worst"] != one.labels).sum() > (one.clean_pred != one.labels).sum()  # attacks bite
    _same(one, two_ranks(run))


def test_zero_gradient_mask_is_gathered_in_order(target):
    model, x, y = target
    x = x.clone()
    x[8:16] = 0.0  # a batch that differs from the others

    def run(ranks):
        return zero_gradient_mask(model, x, y, batch_size=8, device="cpu", ranks=ranks)

    np.testing.assert_array_equal(run(None), two_ranks(run))


def test_a_set_split_in_batches_draws_per_batch_seeds(target):
    """The random stream: batch b of an evaluation is batch 0 of an evaluation seeded batch_seed(seed, b)."""
    model, x, y = target
    whole = evaluate(model, x, y, ["fgsm-rs"], eps=EPS, batch_size=8, seed=5, device="cpu", progress=False,
                     zero_grad=False)
    third = evaluate(model, x[16:24], y[16:24], ["fgsm-rs"], eps=EPS, batch_size=8, seed=batch_seed(5, 2),
                     device="cpu", progress=False, zero_grad=False)
    np.testing.assert_array_equal(whole.adv_pred["fgsm-rs"][16:24], third.adv_pred["fgsm-rs"])


# -- real processes: torchrun, gloo on CPU, through the command line -------------------------------

ENV = {"CLASSWISE_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
       "PYTHONPATH": str(Path(classwise.__file__).resolve().parents[1])}  # the classwise under test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classwise(args: list[str], processes: int) -> subprocess.Popen:
    launcher = [sys.executable, "-m"] if processes == 1 else [
        str(Path(sys.executable).parent / "torchrun"), f"--nproc_per_node={processes}", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", "-m"]
    return subprocess.Popen([*launcher, "classwise", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A SmallCNN (the registry's) fitted for 40 Adam steps on mnist5k: about 85% clean accuracy."""
    from safetensors.torch import save_file

    from classwise.data import load_data
    from classwise.models import create_model

    data = load_data("mnist5k")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("smallcnn", num_classes=10, in_channels=1, image_size=28, mean=(0.1307,), std=(0.3081,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(40):
            idx = torch.randint(0, len(data.train_y), (64,))
            loss = torch.nn.functional.cross_entropy(model(data.train_x[idx].float() / 255), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = tmp_path_factory.mktemp("weights") / "smallcnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_torchrun_two_gloo_processes_write_the_one_process_results(tmp_path, weights):
    """An outside SmallCNN on 40 mnist5k images, fgsm + pgd5 then the cascade; 5 batches of 8 over 2 ranks."""
    common = ["--model", "smallcnn", "--weights", str(weights), "--dataset", "mnist5k", "--examples", "40",
              "--attacks", "fgsm,pgd5", "--eps", "0.3", "--step-size", "0.1", "--batch-size", "8", "-q"]
    runs = {n: tmp_path / f"p{n}" for n in (1, 2)}
    outs = [_finish(p) for p in [_classwise(["evaluate", *common, "--out", str(runs[n])], n) for n in runs]]
    assert outs[1].count("report:") == 1  # rank 0 alone speaks
    for n in runs:
        _finish(_classwise(["evaluate", str(runs[n]), "--attacks", "fgsm,pgd5", "--cascade", "--examples", "40",
                            "--batch-size", "8", "-q"], n))
    one, two = (EvalResults.load(runs[n] / "results.npz") for n in runs)
    assert set(one.attacks) >= {"fgsm", "pgd5", "worst"} and (one.adv_pred["pgd5"] != NOT_ATTACKED).sum() == 40
    _same(one, two)
    seen = one.adv_pred["pgd5"] != NOT_ATTACKED
    assert (one.adv_pred["pgd5"][seen] != one.labels[seen]).sum() > (one.clean_pred[seen] != one.labels[seen]).sum()
    assert sorted(p.name for p in runs[2].iterdir()) == sorted(p.name for p in runs[1].iterdir())
