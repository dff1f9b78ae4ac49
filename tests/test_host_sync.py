"""Contract: the attack loop and the training step never wait for the host.

Issue "speed": no host synchronisation inside the attack loop. The guard of
``host_sync.py`` records, on the CPU, every operation that would make a GPU
wait (value reads, value-dependent shapes); these tests hold the attacks that
run on every example (FGSM, the PGD family) and one optimiser step of every
training method to none. CW-inf and N-Attack are left out on purpose: they
shrink their batch to the examples still unsolved (one sync per iteration),
which saves more than it costs on their 200 sampled examples per class.

The one exception is bounded (issue 14, "work proportional to what is left"):
an *evaluation* PGD-type attack (``keep_best=True``) compacts its batch, dropping
the examples that fooled, every k steps, with one ``nonzero`` (one sync) each:
k = ``compaction_interval(device)`` of ``classwise.attacks.pgd``, 1 on the CPU
(a sync is free there) and ``COMPACT_EVERY_ACCELERATOR`` = 4 on a GPU, so at
most ceil(steps / 4) syncs per restart and target. Training attacks
(``keep_best=False``) and ``compact_every=0`` never sync.
"""

from __future__ import annotations

import collections
import math

import pytest
import torch

from classwise.attacks.pgd import COMPACT_EVERY_ACCELERATOR
from classwise.config import load_config
from classwise.runs import load_run_data
from classwise.train.augment import crop_flip
from classwise.train.loop import Trainer
from classwise.train.objectives import OBJECTIVES
from host_sync import attack_host_syncs, record_host_syncs

pytestmark = pytest.mark.usefixtures("one_thread")

ATTACKS = [
    pytest.param("fgsm", {}, id="fgsm"),
    pytest.param("fgsm-rs", {}, id="fgsm-rs"),
    pytest.param("pgd5", {}, id="pgd5"),
    pytest.param("pgd5", {"keep_best": False}, id="pgd5-training"),
    pytest.param("pgd5", {"restarts": 2}, id="pgd5-restarts2"),
    pytest.param("pgd5", {"loss": "cw"}, id="pgd5-cw"),
    pytest.param("pgd5", {"temperature": 0.2}, id="pgd5-T0.2"),
    pytest.param("cw-margin5", {}, id="cw-margin5"),
    pytest.param("tpgd:5", {"steps": 5}, id="tpgd5"),
]


def test_guard_sees_every_kind_of_host_sync(monkeypatch):
    x = torch.randn(8)
    mask = x > 0
    with record_host_syncs(monkeypatch) as hits:
        x.sum().item()
        bool(mask.any())
        x[mask]
        x.clone()[mask] = 0.0
        mask.nonzero()
        x.tolist()
        x.cpu()
        torch.where(mask, x, -x)  # not a sync
    assert hits == {"aten._local_scalar_dense.default": 2, "aten.index.Tensor": 1, "aten.index_put_.default": 1,
                    "aten.nonzero.default": 1, "Tensor.tolist": 1, "Tensor.cpu": 1}


@pytest.mark.parametrize("every", [0, COMPACT_EVERY_ACCELERATOR], ids=["no-compaction", "gpu-compaction"])
@pytest.mark.parametrize("spec, kwargs", ATTACKS)
def test_attack_syncs_only_to_compact(spec, kwargs, every, monkeypatch):
    """No host sync but one ``nonzero`` per compaction: none without compaction or for a training
    attack, at most restarts * ceil(steps / k) at the GPU's interval k (an untrained model fools
    few examples early, so every compaction runs)."""
    attack, hits = attack_host_syncs(spec, kwargs, every, monkeypatch)
    bound = attack.restarts * math.ceil(attack.steps / every) if every and attack.keep_best else 0
    assert set(hits) <= {"aten.nonzero.default"} and sum(hits.values()) <= bound, f"{spec}: {dict(hits)}"


def test_augmentation_runs_without_host_sync(monkeypatch):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    with record_host_syncs(monkeypatch) as hits:
        crop_flip(x, torch.Generator().manual_seed(0))
    assert not hits, dict(hits)


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_training_step_runs_without_host_sync(method, tmp_path, monkeypatch, method_overrides):
    """Every optimiser step of a real epoch (both defences on); epoch-level work is exempt.

    SGD, the optimiser of the GPU presets: Adam reads its step counter with .item(), but
    that counter lives on the host (a CPU tensor), so the GPU never waits for it.
    """
    overrides = [*method_overrides(method), "train.optimizer=sgd"]
    config = load_config("demo", overrides)
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    step, steps, hits = trainer._step, [], collections.Counter()  # op -> calls over all steps

    def guarded_step(*args, **kwargs):
        with record_host_syncs(monkeypatch) as found:
            step(*args, **kwargs)
        steps.append(1)
        hits.update(found)

    monkeypatch.setattr(trainer, "_step", guarded_step)
    trainer.fit()
    assert len(steps) == 2 and not hits, f"{method}: {hits}"


def test_cfa_calibrated_step_runs_without_host_sync(tmp_path, monkeypatch, method_overrides):
    """CFA's second epoch trains with class-wise radii and KL weights (gathered by label on the device)."""
    config = load_config("demo", [*method_overrides("cfa"), "train.optimizer=sgd", "train.epochs=2"])
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    step, hits, guarded = trainer._step, collections.Counter(), []

    def guarded_step(*args, **kwargs):
        if trainer.epoch == 1:
            assert trainer.objective.eps_scale is not None and trainer.objective.ccr is not None
            with record_host_syncs(monkeypatch) as found:
                step(*args, **kwargs)
            hits.update(found)
            guarded.append(1)
        else:
            step(*args, **kwargs)

    monkeypatch.setattr(trainer, "_step", guarded_step)
    trainer.fit()
    assert len(guarded) == 2 and not hits, f"cfa: {hits}"
