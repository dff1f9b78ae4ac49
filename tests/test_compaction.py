"""Compaction (issue 14, item 3): evaluation PGD-type attacks spend work only on examples still robust.

An evaluation PGD (``keep_best=True``) returns, per example, the first iterate that
fooled the model; once that image is stored the example's result can no longer
change, so it leaves the batch (every ``compact_every`` steps: 1 on the CPU, 4 on a
GPU). These tests hold every PGD-type attack of the registry to the same per-sample
results with and without compaction, and count the forward passes it saves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attack_models import held_out, trained_cnn
from classwise.attacks import PGD, attack_names, create_attack
from classwise.attacks.pgd import COMPACT_EVERY_ACCELERATOR, compaction_interval
from classwise.evaluate import EvalOptions, evaluate, temperature_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = {"linf": 0.1, "l2": 1.5}  # PGD-6 fools most but not all of the tiny model's test images
# Every registered attack: the variants it is checked in (PGD-type attacks, which compact),
# or why it does not compact. A new attack must say which it is.
HOW = {
    "pgd": [("pgd6", {}), ("pgd6", {"restarts": 3}), ("pgd6", {"random_start": False}), ("pgd6", {"loss": "cw"}),
            ("pgd3@target=all", {}), ("pgd6@target=likely", {}), ("pgd6@target=3", {}),
            ("pgd6@norm=l2", {}), ("pgd6@norm=l2", {"restarts": 2}), ("pgd3@norm=l2@target=all", {})],
    "cw-margin": [("cw-margin6", {}), ("cw-margin6", {"restarts": 2}), ("cw-margin3@target=all", {})],
    "tpgd": [("tpgd:5", {"steps": 6}), ("tpgd:0.5", {"steps": 6, "restarts": 2})],
    "fgsm": [("fgsm", {}), ("fgsm@norm=l2", {})],
    "fgsm-rs": [("fgsm-rs", {})],
    "fgm": [("fgm@norm=l2", {})],
    "transfer": "judged by the target only on the surrogate's last iterate (keep_best=False): no outcome is "
                "settled before the last step, so its full-batch PGD cannot drop anyone",
    "cw-inf": "shrinks its batch to the unsolved examples itself",
    "nattack": "stops per example at success itself",
    "fmn": "a minimum-norm attack: every example runs all steps to shrink its distance",
    "apgd-ce": "the official package (or torchattacks) runs it",
    "apgd-t": "the official package (or torchattacks) runs it",
    "fab-t": "the official package (or torchattacks) runs it",
    "square": "the official package (or torchattacks) runs it",
    "autoattack": "the official package cascades its attacks on the robust points itself",
    "apgd": "compacts; per-sample results checked in tests/test_apgd.py",
    "strong": "compacts (APGD phases); per-sample results checked in tests/test_apgd.py",
}
PGD_TYPE = [pytest.param(spec, kwargs, id=f"{spec}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}".rstrip("-"))
            for variants in HOW.values() if isinstance(variants, list) for spec, kwargs in variants]


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(tiny CNN in eval mode, 64 held-out images (64, 1, 28, 28), labels (64,))."""
    return (trained_cnn(0), *held_out(64))


def _build(spec: str, model: nn.Module, kwargs: dict, every: int | None) -> PGD:
    attack = create_attack(spec, model, EPS["l2" if "norm=l2" in spec else "linf"], **kwargs)
    attack.compact_every = every
    return attack


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: PGD):
    """Per-sample results (keep_probs) and the adversarial images (64, 1, 28, 28) of one attack."""
    images = torch.zeros_like(x)

    def sink(name: str, positions: np.ndarray, x_adv: torch.Tensor) -> None:
        images[torch.from_numpy(positions)] = x_adv

    options = EvalOptions(batch_size=40, device="cpu", progress=False, keep_probs=True, zero_grad=False,
                          adv_sink=sink)
    return evaluate(model, x, y, {"a": attack}, options=options), images


def test_every_registered_attack_says_whether_it_compacts(trained):
    """The table above covers the registry; exactly its PGD-type entries are :class:`PGD` (they compact)."""
    model = trained[0]
    assert set(HOW) == set(attack_names())
    for name, how in HOW.items():
        if isinstance(how, list):
            assert all(isinstance(_build(spec, model, kw, None), PGD) for spec, kw in how), name
    surrogate = {"surrogate": trained_cnn(1, steps=30)}
    assert not isinstance(create_attack("transfer", model, 0.1, **surrogate), PGD)


@pytest.mark.parametrize("spec, kwargs", PGD_TYPE)
def test_compaction_leaves_per_sample_results_unchanged(trained, spec, kwargs):
    """Same adversarial predictions and records (target_hits) with compaction every step (the
    CPU's), every 4 steps (the GPU's) and never (the full batch, as before compaction).

    Why this holds: random starts are drawn for the whole batch before any row is
    dropped, losses are sums (a row's gradient does not depend on the other rows), the
    model is in eval mode (BatchNorm uses running statistics) and a row leaves only after
    its first fooling image is stored. What is exact: predictions and records, compared
    bitwise. What is not: a convolution or matmul may block its arithmetic differently for
    another batch size; on this CPU that happens only below 4 rows (gradients differ by
    about 1e-9). A signed L-inf step absorbs that, an L2 step carries it (about 1e-7 in
    pixels), so images and probabilities are compared to 1e-6 and 1e-5: a real bug
    (a skipped step, a row's iterate in another row) moves pixels by a step (>= 0.04).
    """
    model, x, y = trained
    runs = [_evaluate(model, x, y, _build(spec, model, kwargs, every)) for every in (0, 1, COMPACT_EVERY_ACCELERATOR)]
    (ref, ref_images), others = runs[0], runs[1:]
    fooled = (ref.adv_pred["a"] != ref.labels).mean()
    assert 0.1 < fooled < 1.0 or spec.startswith("fgsm") or "target=3" in spec, fooled  # neither trivial nor saturated
    for res, images in others:
        np.testing.assert_array_equal(res.adv_pred["a"], ref.adv_pred["a"])
        assert res.extras.keys() == ref.extras.keys()
        for kind in ref.extras:
            if kind.startswith(("forwards/", "backwards/")):  # the cost: compaction spends less, never more
                assert (res.extras[kind] <= ref.extras[kind]).all()
                continue
            np.testing.assert_array_equal(res.extras[kind], ref.extras[kind])
        assert res.extras["backwards/a"].sum() < ref.extras["backwards/a"].sum() or spec.startswith(("fgsm", "fgm"))
        np.testing.assert_allclose(res.adv_probs["a"], ref.adv_probs["a"], atol=1e-5, rtol=0)
        torch.testing.assert_close(images, ref_images, atol=1e-6, rtol=0)
        assert res.facts["a"] == ref.facts["a"]  # compaction is how it runs, not part of its identity


def _rows_forwarded(model: nn.Module, attack: PGD, x: torch.Tensor, y: torch.Tensor) -> int:
    """Images through ``model`` (summed batch sizes) while ``attack`` runs on x, y."""
    rows = []
    handle = model.register_forward_pre_hook(lambda _, args: rows.append(len(args[0])))
    try:
        attack(x, y, torch.Generator().manual_seed(0), clean_correct=True)
    finally:
        handle.remove()
    return sum(rows)


@pytest.mark.parametrize("spec, kwargs, most", [("pgd10", {}, 0.5), ("pgd10", {"restarts": 3}, 0.5),
                                                ("pgd4@target=all", {}, 0.95)])
def test_compaction_saves_forward_passes(trained, spec, kwargs, most):
    """Without compaction every step sees every example; with it, only those not yet fooled.

    The tiny model at eps 0.1 is fooled on most examples within a few steps, so compaction
    every step must at least halve the rows forwarded untargeted (``most``: the largest
    share of the full batch's rows allowed); reaching a given class takes longer, but a
    targeted run also skips the examples of its own class. Every 4 steps saves less, and
    the training attack (last iterate, keep_best=False) never compacts.
    """
    model, x, y = trained
    ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    rows = {every: _rows_forwarded(model, _build(spec, model, kwargs, every), x, y) for every in (0, 1, 4)}
    attack = _build(spec, model, kwargs, None)
    runs = attack.restarts * (10 if "target=all" in spec else 1)  # restarts, or one run per target class
    assert rows[0] >= len(y) * attack.steps * runs
    assert rows[1] <= rows[4] < rows[0] and rows[1] < most * rows[0], rows
    training = _build("pgd10", model, {"keep_best": False}, None)
    assert _rows_forwarded(model, training, x, y) == len(y) * 10


def test_compaction_interval_is_one_on_the_cpu_and_bounded_elsewhere():
    assert compaction_interval(torch.device("cpu")) == 1
    assert compaction_interval(torch.device("cuda", 0)) == COMPACT_EVERY_ACCELERATOR == 4
    with pytest.raises(ValueError, match="compact_every must be >= 0"):
        PGD(nn.Identity(), create_attack("pgd2", nn.Identity(), 0.1).threat, 2, compact_every=-1)


def _clean_forwards(model: nn.Module, x: torch.Tensor, run) -> int:
    """Forward passes of ``model`` whose input is exactly one of the clean batches of 32 while ``run()`` runs."""
    batches = list(x.split(32))
    seen = []

    def hook(_, args):
        seen.append(any(b.shape == args[0].shape and torch.equal(b, args[0]) for b in batches))

    handle = model.register_forward_pre_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return sum(seen)


@pytest.mark.parametrize("sweep", [True, False], ids=["temperature_sweep", "evaluate"])
def test_attacks_share_one_clean_forward_per_batch(trained, sweep):
    """One clean forward per batch whatever the number of attacks (2 batches: 2), plus the
    input check on the first batch (1) and the zero-gradient sanity pass (2, a gradient pass).

    Every attack here starts at a random point, so its own passes never see a clean batch.
    """
    model, x, y = trained

    def run(many: bool):
        if sweep:
            return lambda: temperature_sweep(model, x, y, 0.1, (1, 2, 5, 50) if many else (1,), steps=2,
                                             batch_size=32, device="cpu")
        specs = ("pgd2", "fgsm-rs", "cw-margin2", "tpgd:3") if many else ("pgd2",)
        return lambda: evaluate(model, x, y, specs, eps=0.1, batch_size=32, device="cpu", progress=False)

    assert _clean_forwards(model, x, run(False)) == _clean_forwards(model, x, run(True)) == 1 + 2 + 2
