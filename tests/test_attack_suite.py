"""What each attack of the suite must do beyond the shared contracts (test_attacks.py).

A two-class linear classifier gives exact answers: with logits [z, -z],
z = w.x + b, the smallest L-inf perturbation that flips x is |z| / ||w||_1
(when the [0, 1] box does not bind), so white-box attacks must flip every
point below eps and no attack may flip a point above it.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from classwise.attacks import (
    PGD, CWInf, LinfThreat, NAttack, TorchattacksAPGDT, TorchattacksAutoAttack,
    TorchattacksFABT, TorchattacksSquare, attack_default_per_class, attack_names, attack_usage, create_attack,
)
from classwise.config import load_config
from classwise.errors import ClasswiseError
from classwise.evaluate import temperature_sweep
from classwise.analysis import relative_robustness
from classwise.runs import Run, load_model_from
from classwise.results import EvalResults

from attack_models import fooled, held_out, trained_cnn

LIN_EPS = 0.25


class TwoClassLinear(nn.Module):
    """Logits [z, -z] with z = w.x + b; x (B, 1, 4, 4)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w.clone()), nn.Parameter(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([z, -z], dim=1)


class Rescaled(nn.Module):
    """``model`` seen through inputs rescaled to [0.1, 0.9]: an undefended model
    whose images have no pixels at exactly 0 or 1 (where tanh-space attacks freeze)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - 0.1) / 0.8)


class QueryLog(nn.Module):
    """Counts the images a model is queried on and whether gradients were on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images, self.with_grad = model, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        self.with_grad += int(torch.is_grad_enabled())
        return self.model(x)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, x (64, 1, 4, 4), y, minimal perturbation (64,) in [0.02, 0.45]).

    x = 0.5 + s * m * sign(w) + noise orthogonal to w, with b = -0.5 * sum(w):
    z = s * m * ||w||_1 exactly. Perturbing towards the boundary moves x towards
    0.5, so the [0, 1] box never binds (x - s * eps * sign(w) is within [0.2, 0.8]).
    """
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g)
    m = 0.02 + 0.43 * torch.rand(64, generator=g)
    s = torch.where(torch.rand(64, generator=g) < 0.5, 1.0, -1.0)
    noise = 0.04 * (2 * torch.rand(64, 16, generator=g) - 1)
    noise -= (noise @ w)[:, None] * w / (w @ w)  # orthogonal to w
    x = 0.5 + (s * m)[:, None] * w.sign() + noise
    model = TwoClassLinear(w, float(-0.5 * w.sum()))
    y = (s < 0).long()  # class 0 where z > 0
    assert x.min() > 0 and x.max() < 1
    return model.eval(), x.view(64, 1, 4, 4), y, m


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return (trained_cnn(0), *held_out(256))


def _run(spec, model, x, y, eps, seed=0, **kwargs):
    return create_attack(spec, model, eps, **kwargs)(x, y, torch.Generator().manual_seed(seed))


def _robust_pct(model, x_adv, y) -> float:
    return 100.0 * (1 - fooled(model, x_adv, y).float().mean().item())


# --- the linear classifier: exact minimal perturbations ------------------------------------


def test_linear_fixture_minimal_perturbation_is_exact(linear):
    model, x, y, m = linear
    with torch.no_grad():
        z = model(x)[:, 0]
    assert torch.allclose(z.abs() / model.w.abs().sum(), m, atol=1e-5)
    assert not fooled(model, x, y).any()


@pytest.mark.parametrize("spec", ["pgd20", "cw-margin", "fgsm", "tpgd:5"])
def test_white_box_flips_every_point_below_eps_and_none_above(linear, spec):
    model, x, y, m = linear
    flipped = fooled(model, _run(spec, model, x, y, LIN_EPS), y)
    assert flipped[m < 0.95 * LIN_EPS].all()
    assert not flipped[m > LIN_EPS].any()


@pytest.mark.parametrize("spec, kwargs", [
    ("nattack", {"max_iterations": 60, "population": 50}), ("transfer", {}), ("apgd-ce", {"steps": 10}),
    ("square", {}), ("cw-inf", {"max_iterations": 50, "learning_rate": 0.05}),
])
def test_no_attack_flips_a_point_beyond_eps(linear, spec, kwargs):
    model, x, y, m = linear
    if spec == "transfer":
        kwargs = {"surrogate": model}  # the model itself: the strongest possible surrogate
    flipped = fooled(model, _run(spec, model, x, y, LIN_EPS, **kwargs), y)
    assert not flipped[m > LIN_EPS].any()
    assert flipped[m < 0.5 * LIN_EPS].float().mean() >= 0.9


def test_cw_inf_finds_nearly_minimal_perturbations(linear):
    """Tau shrinks by 0.9 after each success, so the search guarantees 1/0.9 of the
    smallest feasible tau; Adam's step (lr 0.005) adds a little."""
    model, x, y, m = linear
    attack = CWInf(model, LinfThreat(LIN_EPS, 0.0), stop_within_eps=False)  # paper settings
    best, dist = attack.minimal_adversarial(x, y)
    ratio = dist / m
    assert torch.allclose(dist, (best - x).abs().flatten(1).amax(1))
    assert fooled(model, best, y).all()
    assert ratio.min() >= 0.999 and ratio.max() <= 1 / 0.9 + 0.04
    assert ratio.median() <= 1.1


def test_cw_inf_counts_robust_exactly_when_nothing_within_eps(linear):
    model, x, y, m = linear
    x_adv = CWInf(model, LinfThreat(LIN_EPS, 0.0), max_iterations=300)(x, y)
    flipped = fooled(model, x_adv, y)
    assert flipped[m < 0.85 * LIN_EPS].all() and not flipped[m > LIN_EPS].any()
    assert torch.equal(x_adv[~flipped], x[~flipped])  # robust: the clean image comes back
    assert (x_adv - x).abs().max() <= LIN_EPS + 1e-6


# --- CW-inf on a CNN -------------------------------------------------------------------------


def test_cw_inf_stopping_within_eps_does_not_change_who_is_robust(cnn):
    model, x, y = cnn[0], cnn[1][:96], cnn[2][:96]
    budget = {"max_iterations": 10, "learning_rate": 0.1, "binary_search_steps": 2}
    fast = CWInf(model, LinfThreat(0.1, 0.0), **budget)(x, y)
    search = CWInf(model, LinfThreat(0.1, 0.0), stop_within_eps=False, **budget)
    full = search(x, y)
    # Dropping finished examples changes the batches the others are computed in, so only
    # examples found well inside eps must agree exactly; elsewhere at most 1 in 50 differs.
    _, dist = search.minimal_adversarial(x, y)
    agree = fooled(model, fast, y) == fooled(model, full, y)
    assert agree.float().mean() >= 0.98 and agree[dist <= 0.9 * 0.1].all()
    assert fooled(model, full, y).sum() > fooled(model, x, y).sum()


def test_cw_inf_distances_zero_for_misclassified_and_inf_when_nothing_found(cnn):
    model, x, y = cnn[0], cnn[1][:64], cnn[2][:64]
    attack = CWInf(model, LinfThreat(0.1, 0.0), max_iterations=3, binary_search_steps=1)
    best, dist = attack.minimal_adversarial(x, y)
    wrong = fooled(model, x, y)
    assert wrong.any() and (dist[wrong] == 0).all() and torch.equal(best[wrong], x[wrong])
    missing = dist.isinf()
    assert missing.any() and torch.equal(best[missing], x[missing])


# Saturated pixels: on MNIST about 80% of pixels are exactly 0 or 1. CW-inf must be at least
# as strong as PGD-40 at the same eps, within CW_PGD_TOLERANCE percentage points of robust
# accuracy (measured: 1-3 points above PGD-40 on these images, as cw-margin-40 is; the tanh
# change of variables, which freezes saturated pixels, was 16 points above with the paper's
# 1000 iterations and 44 above with 100).
CW_PGD_TOLERANCE = 5.0


def _cw_against_pgd(model, x, y, eps, **cw):
    """Robust accuracy (percent of all) under PGD-40 and CW-inf on the same images."""
    assert ((x == 0) | (x == 1)).float().mean() > 0.5  # mostly saturated pixels
    pgd = _robust_pct(model, _run("pgd40", model, x, y, eps), y)
    return pgd, _robust_pct(model, _run("cw-inf", model, x, y, eps, **cw), y)


def test_cw_inf_on_saturated_pixels_is_as_strong_as_pgd(mnist_mlp):
    model, x, y = mnist_mlp[0], mnist_mlp[1][:150].float() / 255, mnist_mlp[2][:150]
    pgd, cw = _cw_against_pgd(model, x, y, 0.1, max_iterations=100)
    assert cw <= pgd + CW_PGD_TOLERANCE
    assert pgd < _robust_pct(model, x, y) - 20  # the eps is a real test, not a saturated one
    tanh = _robust_pct(model, _run("cw-inf", model, x, y, 0.1, max_iterations=100, box="tanh"), y)
    assert tanh > cw + CW_PGD_TOLERANCE  # the reference's box handling is the weakness this removes


@pytest.mark.slow
def test_cw_inf_paper_settings_on_saturated_pixels_is_as_strong_as_pgd(mnist_mlp):
    """Paper settings (5 binary-search steps, up to 1000 Adam steps) on 300 MNIST images."""
    model, x, y = mnist_mlp[0], mnist_mlp[1].float() / 255, mnist_mlp[2]
    for eps in (0.05, 0.1):
        pgd, cw = _cw_against_pgd(model, x, y, eps)
        assert cw <= pgd + CW_PGD_TOLERANCE


@pytest.mark.slow
def test_cw_inf_full_budget_is_close_to_pgd(cnn):
    """Paper settings (5 x 1000 Adam steps) on a CNN: what PGD fools, CW-inf fools too."""
    model, x, y = cnn[0], cnn[1][:64], cnn[2][:64]
    pgd = fooled(model, _run("pgd100", model, x, y, 0.1), y).sum()
    cw = fooled(model, _run("cw-inf", model, x, y, 0.1), y).sum()
    assert 0.9 * pgd <= cw <= len(y)


# --- names: cw-margin and tpgd are PGD variants ---------------------------------------------


def test_cw_margin_is_pgd_on_the_margin_loss(cnn):
    model, x, y = cnn
    assert torch.equal(_run("cw-margin10", model, x, y, 0.05), _run("pgd10", model, x, y, 0.05, loss="cw"))
    assert "not cw-inf" in attack_usage()["cw-margin"]


def test_tpgd_at_1_is_vanilla_pgd20_and_other_temperatures_differ(cnn):
    model, x, y = cnn
    pgd = _run("pgd20", model, x, y, 0.05)
    assert torch.equal(_run("tpgd:1", model, x, y, 0.05), pgd)
    assert torch.equal(_run("tpgd:4", model, x, y, 0.05), _run("pgd20", model, x, y, 0.05, temperature=0.25))
    assert not torch.equal(_run("tpgd:50", model, x, y, 0.05), pgd)


def test_temperature_sweep_gives_per_sample_results_and_relative_robustness(cnn):
    model, x, y = cnn[0], cnn[1][:128], cnn[2][:128]
    res = temperature_sweep(model, x, y, 0.05, inv_temps=(1, 50), steps=5, device="cpu", batch_size=64)
    assert isinstance(res, EvalResults) and set(res.attacks) == {"pgd5", "tpgd:1", "tpgd:50"}
    assert np.array_equal(res.adv_pred["tpgd:1"], res.adv_pred["pgd5"])
    rel = relative_robustness(res)
    assert set(rel) == {"tpgd:1", "tpgd:50"} and rel["tpgd:50"].shape == (11,)
    assert np.allclose(np.nan_to_num(rel["tpgd:1"]), 0.0)
    # The sweep attacks clean-correct examples in batches of 64, the direct run all 128 at once:
    # their random starts differ, so only confident outcomes must match exactly.
    direct = _run("tpgd:50", model, x, y, 0.05, steps=5)  # same seed 0 as the sweep
    ok = ~fooled(model, x, y)
    pred, margin = _predict_with_margin(model, direct)
    agree = res.adv_pred["tpgd:50"] == pred.numpy()
    assert agree[ok.numpy()].mean() >= 0.95  # a wrong temperature agrees on ~82%
    confident = (ok & (margin >= 3.0)).numpy()  # logit margin; flips seen only below 2.4
    assert confident.sum() >= ok.sum() // 2 and agree[confident].all()


def _predict_with_margin(model, x):
    """Predictions (B,) and the logit margin top1 - top2 (B,)."""
    with torch.no_grad():
        top = model(x).topk(2, dim=1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


# --- agreement with torchattacks -------------------------------------------------------------


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_and_fgsm_agree_with_torchattacks(cnn, random_start):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = cnn
    for eps in (0.05, 0.1):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            theirs = torchattacks.PGD(model, eps=eps, alpha=0.01, steps=10, random_start=random_start)(x, y)
        ours = _run("pgd10", model, x, y, eps, step_size=0.01, random_start=random_start)
        assert abs(_robust_pct(model, ours, y) - _robust_pct(model, theirs, y)) <= 1.0
    fgsm = _robust_pct(model, _run("fgsm", model, x, y, 0.1), y)
    assert abs(fgsm - _robust_pct(model, torchattacks.FGSM(model, eps=0.1)(x, y), y)) <= 1.0


# --- N-Attack -----------------------------------------------------------------------------------


def test_nattack_fools_an_undefended_model_using_outputs_only(cnn):
    model, x, y = Rescaled(cnn[0]), 0.1 + 0.8 * cnn[1][:16], cnn[2][:16]
    log = QueryLog(model)
    attack = NAttack(log, LinfThreat(0.1, 0.0), population=50, max_iterations=30)
    x_adv = attack(x, y, torch.Generator().manual_seed(0))
    ok = ~fooled(model, x, y)
    assert fooled(model, x_adv, y)[ok].float().mean() >= 0.75
    assert log.with_grad == 0
    assert log.images <= len(y) * (2 + 30 * 51)


def test_nattack_stops_each_example_at_its_first_success(linear):
    model, x, y, m = linear
    log = QueryLog(model)
    NAttack(log, LinfThreat(LIN_EPS, 0.0), population=20, max_iterations=50)(x, y, torch.Generator())
    easy = int((m < 0.5 * LIN_EPS).sum())
    assert log.images < len(y) * (2 + 50 * 21) - easy * 40 * 21  # easy points stop early


# --- transfer -----------------------------------------------------------------------------------


def _save_surrogate(path, model_name="smallcnn"):
    from classwise.models import create_model
    from classwise.checkpoint import save_model

    torch.manual_seed(3)
    model = create_model(model_name, num_classes=10, in_channels=1, image_size=28)
    meta = {"model": model_name, "kwargs": {}, "num_classes": 10, "in_channels": 1, "image_size": 28,
            "mean": [0.0], "std": [1.0]}
    save_model(model, path, meta)
    return model.eval()


def test_transfer_loads_a_checkpoint_or_run_folder(cnn, tmp_path):
    model, x, y = cnn[0], cnn[1][:32], cnn[2][:32]
    Run.create(tmp_path / "run", load_config("demo"))  # a run folder of ours (its checkpoint saved below)
    surrogate = _save_surrogate(tmp_path / "run" / "checkpoints" / "last.safetensors")
    direct = _run("transfer", model, x, y, 0.1, surrogate=surrogate)
    for spec in (f"transfer:{tmp_path / 'run'}", f"transfer:{tmp_path / 'run/checkpoints/last.safetensors'}"):
        assert torch.equal(_run(spec, model, x, y, 0.1), direct)
    loaded = load_model_from(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), surrogate.state_dict().values()))


def test_transfer_uses_the_surrogate_and_asks_the_target_only_for_clean_labels(cnn):
    target, x, y = QueryLog(cnn[0]), cnn[1][:64], cnn[2][:64]
    surrogate = trained_cnn(1, steps=30)
    x_adv = _run("transfer", target, x, y, 0.1, surrogate=surrogate)
    assert target.images == len(y) and target.with_grad == 0  # one clean pass, no gradient
    plain = _run("transfer", target, x, y, 0.1, surrogate=surrogate, keep_clean=False)
    last = PGD(surrogate, LinfThreat(0.1, 0.0125), steps=20, keep_best=False)(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(plain, last)
    wrong = fooled(cnn[0], x, y)
    assert torch.equal(x_adv[wrong], x[wrong]) and torch.equal(x_adv[~wrong], last[~wrong])
    assert fooled(cnn[0], x_adv, y).sum() > wrong.sum()


def test_transfer_errors_are_one_clear_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    cases = [("transfer", "needs a surrogate"), (f"transfer:{tmp_path / 'none'}", "does not exist"),
             (f"transfer:{tmp_path / 'bare.safetensors'}", "lacks model metadata"),
             (f"transfer:{tmp_path}", "not a classwise run folder")]
    for spec, message in cases:
        with pytest.raises((ValueError, ClasswiseError), match=message) as error:
            create_attack(spec, nn.Identity(), 0.1)
        assert "\n" not in str(error.value)


# --- AutoAttack's attacks: official package and torchattacks ----------------------------------


def test_torchattacks_wrappers_use_the_standard_autoattack_settings():
    torchattacks = pytest.importorskip("torchattacks")
    model, threat = nn.Linear(2, 10), LinfThreat(0.03, 0.0)
    apgdt = TorchattacksAPGDT(model, threat).build(torchattacks, 10, 0)
    assert (apgdt.steps, apgdt.n_restarts, apgdt.n_target_classes, apgdt.thr_decr) == (100, 1, 9, 0.75)
    assert TorchattacksAPGDT(model, threat).build(torchattacks, 100, 0).n_target_classes == 9
    assert TorchattacksAPGDT(model, threat).build(torchattacks, 5, 0).n_target_classes == 4
    fab = TorchattacksFABT(model, threat).build(torchattacks, 10, 0)
    assert (fab.steps, fab.n_restarts, fab.n_target_classes, fab.multi_targeted) == (100, 1, 9, True)
    square = TorchattacksSquare(model, threat).build(torchattacks, 10, 0)
    assert (square.n_queries, square.n_restarts, square.p_init, square.loss, square.rescale_schedule) == (
        5000, 1, 0.8, "margin", False)
    apgd = create_attack("apgd-ce", model, 0.03, backend="torchattacks").build(torchattacks, 10, 7)
    assert (apgd.steps, apgd.n_restarts, apgd.loss, apgd.seed, apgd.eps) == (100, 1, "ce", 7, 0.03)


def test_official_wrappers_keep_the_standard_version_settings():
    pytest.importorskip("pyautoattack")
    model = nn.Linear(2, 10)
    aa = create_attack("apgd-t", model, 0.03).standard(torch.device("cpu"), 7, 10)
    assert aa.version == "standard" and aa.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (aa.apgd.n_iter, aa.apgd.n_restarts, aa.apgd.thr_decr, aa.apgd.eot_iter, aa.apgd.eps) == (100, 1, 0.75, 1, 0.03)
    assert (aa.apgd_targeted.n_iter, aa.apgd_targeted.n_restarts, aa.apgd_targeted.n_target_classes) == (100, 1, 9)
    assert (aa.fab.n_iter, aa.fab.n_restarts, aa.fab.n_target_classes, aa.fab.alpha_max) == (100, 1, 9, 0.1)
    assert (aa.square.n_queries, aa.square.p_init, aa.square.rescale_schedule, aa.seed, aa.norm) == (
        5000, 0.8, False, 7, "Linf")
    assert create_attack("fab-t", model, 0.03).standard(torch.device("cpu"), 0, 5).fab.n_target_classes == 4
    short = create_attack("apgd-ce", model, 0.03, steps=10).standard(torch.device("cpu"), 0, 10).apgd
    assert (short.n_iter, short.n_iter_2, short.n_iter_min, short.size_decr) == (10, 2, 1, 1)  # as built with 10


def test_each_attack_names_its_family_backend_and_version():
    pytest.importorskip("pyautoattack")
    pytest.importorskip("torchattacks")
    from importlib.metadata import version
    for family in ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack"):
        official = create_attack(family, nn.Identity(), 0.1)
        theirs = create_attack(family, nn.Identity(), 0.1, backend="torchattacks")
        assert (type(official).family, type(official).backend) == (family, "autoattack")
        assert (type(theirs).family, type(theirs).backend) == (family, "torchattacks")
        assert type(official).backend_version == version("pyautoattack")
        assert type(theirs).backend_version == version("torchattacks")
        assert "backend='autoattack'" in repr(official) and "backend='torchattacks'" in repr(theirs)
    with pytest.raises(ValueError, match="unknown backend 'art'"):
        create_attack("apgd-ce", nn.Identity(), 0.1, backend="art")


def _backends_agree(model, x, y, family, eps):
    """Per-class robust counts of ``family`` under both backends (same seed), and the class sizes."""
    from classwise.evaluate import evaluate
    attacks = {b: create_attack(family, model, eps, backend=b) for b in ("autoattack", "torchattacks")}
    res = evaluate(model, x, y, attacks, device="cpu", progress=False)
    sizes = np.bincount(res.labels, minlength=10)
    counts = {b: np.bincount(res.labels[res.correct(b)], minlength=10) for b in attacks}
    return counts["autoattack"], counts["torchattacks"], sizes


# Tolerance of the backend agreement: per class at most 2 robust examples apart (of about 30),
# overall at most 1 percentage point. Both are ports of one algorithm run with one seed, so they
# should agree to float rounding; a wrong eps, loss, target count or step schedule moves the
# numbers by far more (eps 0.1 leaves ~30% robust of 80% clean, so every class is contested).
AGREE_EPS, AGREE_PER_CLASS, AGREE_OVERALL = 0.1, 2, 1.0


def _assert_agree(official, theirs, sizes):
    assert np.abs(official - theirs).max() <= AGREE_PER_CLASS, (official, theirs)
    assert 100 * abs(int(official.sum()) - int(theirs.sum())) / sizes.sum() <= AGREE_OVERALL
    assert 0 < official.sum() < sizes.sum()  # neither trivial nor saturated


@pytest.mark.parametrize("family, n", [("apgd-ce", 300), ("apgd-t", 120)])
def test_official_and_torchattacks_backends_agree_per_class(mnist_mlp, family, n):
    pytest.importorskip("pyautoattack")
    pytest.importorskip("torchattacks")
    model, x, y = mnist_mlp
    _assert_agree(*_backends_agree(model, x[:n], y[:n], family, AGREE_EPS))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["apgd-t", "fab-t", "square", "autoattack"])
def test_official_and_torchattacks_backends_agree_per_class_slow(mnist_mlp, family):
    pytest.importorskip("pyautoattack")
    pytest.importorskip("torchattacks")
    model, x, y = mnist_mlp
    _assert_agree(*_backends_agree(model, x, y, family, AGREE_EPS))


def test_wrappers_leave_the_global_rng_alone_and_autoattack_cascades(cnn):
    pytest.importorskip("torchattacks")
    model, x, y = cnn[0], cnn[1][:64], cnn[2][:64]
    budget = {"steps": 3, "n_queries": 10, "n_target_classes": 1}
    for backend in ("autoattack", "torchattacks"):
        state = torch.get_rng_state()
        auto = _run("autoattack", model, x, y, 0.05, backend=backend, **budget)
        assert torch.equal(torch.get_rng_state(), state)
        apgd = _run("apgd-ce", model, x, y, 0.05, backend=backend, steps=3)  # the cascade's first stage, same seed
        flipped = fooled(model, apgd, y)
        assert torch.equal(auto[flipped], apgd[flipped])
        assert (fooled(model, auto, y) | ~flipped).all()
    assert TorchattacksAutoAttack.components[0].name == "apgd-ce"


@pytest.mark.parametrize("module, backend, message", [
    ("torchattacks", "torchattacks", "pip install torchattacks"),
    ("pyautoattack", "autoattack", "pip install pyautoattack"),
])
def test_a_missing_attack_package_is_one_clear_error(cnn, monkeypatch, module, backend, message):
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    attack = create_attack("square", cnn[0], 0.05, backend=backend)  # building works; running needs the package
    with pytest.raises(ClasswiseError, match=message) as error:
        attack(cnn[1][:4], cnn[2][:4])
    assert "\n" not in str(error.value)


# --- the registry ---------------------------------------------------------------------------------


def test_registry_names_usage_and_default_subsamples():
    names = attack_names()
    assert set(attack_usage()) == set(names)
    assert attack_usage()["tpgd"].startswith("tpgd:X") and attack_usage()["transfer"].startswith("transfer:PATH")
    assert attack_default_per_class("cw-inf") == 200 and attack_default_per_class("nattack") == 200
    assert attack_default_per_class("pgd20") is None and attack_default_per_class("tpgd:3") is None
    assert CWInf.default_per_class == NAttack.default_per_class == 200
    with pytest.raises(ValueError, match="unknown attack"):
        attack_default_per_class("cw")


@pytest.mark.parametrize("spec, kwargs, message", [
    ("tpgd:abc", {}, "1/T must be a positive number, as in tpgd:2"),
    ("tpgd:-1", {}, "1/T must be a positive number"),
    ("tpgd", {}, "1/T must be a positive number"),
    ("tpgd:2", {"temperature": 0.5}, "takes no option temperature"),
    ("cw-inf5", {}, "unknown attack 'cw-inf5'"),
    ("fgsm:2", {}, "unknown attack 'fgsm:2'"),
    ("cw-inf", {"step_size": 0.01}, "takes no step_size"),
    ("cw-inf", {"max_iterations": 0}, "max_iterations must be >= 1"),
    ("cw-inf", {"steps": 5}, "takes no option steps"),
    ("nattack", {"population": 1}, "population must be >= 2"),
    ("cw-margin10", {"steps": 5}, "fixes 10 steps"),
    ("cw-margin", {"loss": "ce"}, "takes no option loss"),
    ("apgd-ce", {"steps": 0}, "must be >= 1"),
    ("square", {"step_size": 0.1}, "takes no step_size"),
])
def test_registry_errors_are_one_clear_line(spec, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        create_attack(spec, nn.Identity(), 0.1, **kwargs)
    assert "\n" not in str(error.value)


def test_evaluate_runs_every_named_attack_by_spec(cnn):
    from classwise.evaluate import evaluate

    model, x, y = cnn[0], cnn[1][:32], cnn[2][:32]
    attacks = {spec: create_attack(spec, model, 0.05, **kw) for spec, kw in [
        ("cw-margin5", {}), ("tpgd:3", {"steps": 5}), ("cw-inf", {"max_iterations": 5}),
        ("nattack", {"max_iterations": 2, "population": 8})]}
    res = evaluate(model, x, y, attacks, device="cpu", progress=False)
    clean = res.correct()
    for name in attacks:
        assert not (res.correct(name) & ~clean).any()
    json.dumps(res.attacks)
