"""Contracts every attack of the registry keeps, on a small trained MNIST model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from classwise.attacks import (
    FGSM, PGD, LinfThreat, attack_names, create_attack, eval_mode, input_grad, parse_spec,
)
from classwise.attacks.losses import cross_entropy, cw_margin, make_loss

from attack_models import fooled, held_out, trained_cnn

EPS = 0.05  # PGD-10 leaves about 60% of the 92% clean accuracy: neither trivial nor saturated
L2_EPS = 1.0  # L2 radius on MNIST: PGD-10 leaves about 35% of the 92%
SPECS = [
    pytest.param("fgsm", {}, id="fgsm"),
    pytest.param("fgsm-rs", {}, id="fgsm-rs"),
    pytest.param("pgd10", {}, id="pgd10"),
    pytest.param("pgd10", {"restarts": 2}, id="pgd10-restarts2"),
    pytest.param("pgd10", {"loss": "cw"}, id="pgd10-cw"),
    pytest.param("pgd10", {"temperature": 0.2}, id="pgd10-T0.2"),
    pytest.param("cw-margin10", {}, id="cw-margin10"),
    pytest.param("tpgd:5", {"steps": 10}, id="tpgd5"),
    pytest.param("cw-inf", {"max_iterations": 5, "learning_rate": 0.1, "binary_search_steps": 2, "tau_decrease": 0.5},
                 id="cw-inf"),  # tau 1 -> eps in 5 rounds (the default 0.9: 29)
    pytest.param("nattack", {"max_iterations": 3, "population": 10}, id="nattack"),
    pytest.param("transfer", {"surrogate": "trained-surrogate"}, id="transfer"),
    pytest.param("apgd-ce", {"steps": 5}, id="apgd-ce"),
    pytest.param("apgd-t", {"steps": 3, "n_target_classes": 2}, id="apgd-t"),
    pytest.param("fab-t", {"steps": 3, "n_target_classes": 2}, id="fab-t"),
    pytest.param("square", {"n_queries": 20}, id="square"),
    pytest.param("autoattack", {"steps": 2, "n_queries": 20, "n_target_classes": 1}, id="autoattack"),
    pytest.param("fmn", {"steps": 20}, id="fmn"),
    pytest.param("pgd10@target=likely", {}, id="pgd10-target-likely"),
    pytest.param("cw-margin2@target=all", {}, id="cw-margin2-target-all"),
    pytest.param("apgd-ce", {"steps": 5, "backend": "torchattacks"}, id="apgd-ce-torchattacks"),
    pytest.param("apgd-t", {"steps": 3, "n_target_classes": 2, "backend": "torchattacks"}, id="apgd-t-torchattacks"),
    pytest.param("fab-t", {"steps": 3, "n_target_classes": 2, "backend": "torchattacks"}, id="fab-t-torchattacks"),
    pytest.param("square", {"n_queries": 20, "backend": "torchattacks"}, id="square-torchattacks"),
    pytest.param("autoattack", {"steps": 2, "n_queries": 20, "n_target_classes": 1, "backend": "torchattacks"},
                 id="autoattack-torchattacks"),
    pytest.param("apgd10", {}, id="apgd10"),
    pytest.param("apgd10@target=3", {"loss": "dlr"}, id="apgd10-dlr-target3"),
    pytest.param("strong", {"steps": 5, "targets": 2, "target_steps": 5}, id="strong"),
]
# The same contracts under the L2 threat model (eps in L2 units); the
# AutoAttack wrappers join once they pass the norm to the official package.
L2_SPECS = [
    pytest.param("fgm", {}, id="l2-fgm"),
    pytest.param("fgsm", {}, id="l2-fgsm"),
    pytest.param("fgsm-rs", {}, id="l2-fgsm-rs"),
    pytest.param("pgd10", {}, id="l2-pgd10"),
    pytest.param("pgd10", {"restarts": 2}, id="l2-pgd10-restarts2"),
    pytest.param("pgd10", {"loss": "cw"}, id="l2-pgd10-cw"),
    pytest.param("cw-margin10", {}, id="l2-cw-margin10"),
    pytest.param("tpgd:5", {"steps": 10}, id="l2-tpgd5"),
    pytest.param("transfer", {"surrogate": "trained-surrogate"}, id="l2-transfer"),
    pytest.param("fmn", {"steps": 20}, id="l2-fmn"),
    pytest.param("pgd10@target=3", {}, id="l2-pgd10-target3"),
    pytest.param("cw-margin10@target=likely", {}, id="l2-cw-margin10-target-likely"),
    pytest.param("pgd2@target=all", {}, id="l2-pgd2-target-all"),
    pytest.param("apgd10", {"loss": "dlr"}, id="l2-apgd10-dlr"),
    pytest.param("strong", {"steps": 5, "targets": 2, "target_steps": 5}, id="l2-strong"),
]
ALL = [pytest.param("linf", *p.values, id=p.id) for p in SPECS] + [pytest.param("l2", *p.values, id=p.id) for p in L2_SPECS]

# Every registered base name must appear in SPECS (checked below), so a new
# attack cannot join the registry without passing the contracts.


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model in eval mode, 128 held-out images (B, 1, 28, 28) in [0, 1], labels)."""
    return (trained_cnn(0), *held_out(128))


def _run(spec, model, x, y, eps=None, seed=1, clean_correct=False, norm="linf", **kwargs):
    if kwargs.get("surrogate") == "trained-surrogate":  # a second model, trained with another seed
        kwargs["surrogate"] = trained_cnn(1, steps=30)
    eps = (EPS if norm == "linf" else L2_EPS) if eps is None else eps
    attack = create_attack(spec, model, eps, norm=norm, **kwargs)
    return attack(x, y, generator=torch.Generator().manual_seed(seed), clean_correct=clean_correct)


def _distance(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example perturbation norm (B,), computed here independently of the threat objects."""
    delta = (x_adv - x).flatten(1).double()
    return delta.abs().amax(dim=1) if norm == "linf" else delta.pow(2).sum(dim=1).sqrt()


def test_model_is_a_useful_target(trained):
    model, x, y = trained
    assert 0.85 < 1 - fooled(model, x, y).float().mean() < 1.0


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_stays_in_ball_and_box_with_shape_and_dtype(trained, norm, spec, kwargs):
    model, x, y = trained
    x_adv = _run(spec, model, x, y, norm=norm, **kwargs)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool((_distance(x_adv, x, norm) <= (EPS if norm == "linf" else L2_EPS) + 1e-6).all())  # per example
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert not torch.equal(x_adv, x)


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_runs_in_eval_mode_and_restores_every_mode(trained, norm, spec, kwargs):
    model = copy.deepcopy(trained[0]).train()
    model[7].eval()  # the Dropout: a mixed train/eval state must come back as it was
    modes = [m.training for m in model.modules()]
    stats = [b.clone() for b in model.buffers()]
    x, y = trained[1], trained[2]
    x_adv = _run(spec, model, x, y, norm=norm, **kwargs)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))  # BN stats untouched
    assert torch.equal(x_adv, _run(spec, trained[0], x, y, norm=norm, **kwargs))  # same as in eval mode


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_deterministic_under_a_seeded_generator(trained, norm, spec, kwargs):
    model, x, y = trained
    first = _run(spec, model, x, y, norm=norm, **kwargs)
    torch.rand(100)  # moving the global RNG must not matter
    assert torch.equal(first, _run(spec, model, x, y, norm=norm, **kwargs))


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_never_raises_accuracy_and_keeps_misclassified_clean_images(trained, norm, spec, kwargs):
    model, x, y = trained
    clean_fooled = fooled(model, x, y)
    x_adv = _run(spec, model, x, y, norm=norm, **kwargs)
    adv_fooled = fooled(model, x_adv, y)
    assert bool((adv_fooled | ~clean_fooled).all())  # robust-correct subset of clean-correct
    assert adv_fooled.sum() > clean_fooled.sum()
    assert torch.equal(x_adv[clean_fooled], x[clean_fooled])


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_clean_correct_promise_changes_nothing_where_it_holds(trained, norm, spec, kwargs):
    model, x, y = trained
    ok = ~fooled(model, x, y)
    x, y = x[ok], y[ok]
    assert torch.equal(_run(spec, model, x, y, clean_correct=True, norm=norm, **kwargs),
                       _run(spec, model, x, y, norm=norm, **kwargs))


@pytest.mark.parametrize("spec, kwargs, saved", [
    pytest.param("pgd10", {}, 1, id="pgd10"), pytest.param("fgsm-rs", {}, 1, id="fgsm-rs"),
    pytest.param("pgd10", {"restarts": 2}, 1, id="pgd10-restarts2"),
    pytest.param("pgd10", {"random_start": False}, 0, id="pgd10-no-random-start"),
])
def test_clean_correct_promise_saves_the_clean_forward(trained, spec, kwargs, saved):
    """Evaluation PGD checks the clean image with one extra forward; the promise skips exactly it."""
    model, x, y = trained
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        counts = []
        for promise in (False, True):
            calls.clear()
            _run(spec, model, x, y, clean_correct=promise, **kwargs)
            counts.append(len(calls))
    finally:
        handle.remove()
    steps = create_attack(spec, model, EPS, **kwargs)
    assert counts[0] - counts[1] == saved
    assert counts[1] == steps.steps * steps.restarts + (steps.restarts - 1)  # steps, and a check between restarts


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_eps_zero_returns_the_clean_images(trained, norm, spec, kwargs):
    model, x, y = trained
    x_adv = _run(spec, model, x, y, eps=0.0, norm=norm, **kwargs)
    assert torch.equal(x_adv, x)
    assert torch.equal(fooled(model, x_adv, y), fooled(model, x, y))


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_parameters_get_no_grad(trained, norm, spec, kwargs):
    model, x, y = trained
    model.zero_grad(set_to_none=True)
    _run(spec, model, x, y, norm=norm, **kwargs)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("norm, spec, kwargs", ALL)
def test_works_inside_no_grad(trained, norm, spec, kwargs):
    model, x, y = trained
    with torch.no_grad():
        inside = _run(spec, model, x, y, norm=norm, **kwargs)
    assert torch.equal(inside, _run(spec, model, x, y, norm=norm, **kwargs))


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_more_steps_only_grow_the_fooled_set(trained, loss):
    model, x, y = trained
    runs = [_run(f"pgd{k}", model, x, y, step_size=0.01, loss=loss) for k in (2, 5, 15)]
    flips = [fooled(model, r, y) for r in runs]
    for fewer, more in zip(flips, flips[1:]):
        assert bool((more | ~fewer).all())
    assert flips[-1].sum() > flips[0].sum()


def test_keep_best_keeps_what_the_last_iterate_found(trained):
    model, x, y = trained
    last = _run("pgd5", model, x, y, step_size=0.01, keep_best=False)
    best = _run("pgd5", model, x, y, step_size=0.01)
    assert bool((fooled(model, best, y) | ~fooled(model, last, y)).all())
    assert not torch.equal(best, last)


def test_more_restarts_only_grow_the_fooled_set(trained):
    model, x, y = trained
    runs = [_run("pgd3", model, x, y, eps=0.08, step_size=0.01, restarts=r) for r in (1, 2, 4)]
    flips = [fooled(model, r, y) for r in runs]
    for fewer, more in zip(flips, flips[1:]):
        assert bool((more | ~fewer).all())
    assert flips[-1].sum() > flips[0].sum()


def test_generator_feeds_only_the_random_starts(trained):
    model, x, y = trained
    generator = torch.Generator().manual_seed(3)
    create_attack("pgd4", model, EPS, restarts=3)(x, y, generator=generator)
    reference = torch.Generator().manual_seed(3)
    for _ in range(3):
        torch.rand(x.shape, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())


def test_pgd_beats_fgsm(trained):
    model, x, y = trained
    pgd = fooled(model, _run("pgd20", model, x, y, eps=0.1), y).sum()
    fgsm = fooled(model, _run("fgsm", model, x, y, eps=0.1), y).sum()
    assert pgd >= fgsm + 10


def test_keep_best_false_returns_the_last_iterate(trained):
    model, x, y = trained
    threat = LinfThreat(EPS, 0.01)
    x_adv = PGD(model, threat, steps=7, keep_best=False)(x, y, torch.Generator().manual_seed(5))
    x_ref = threat.random_init(x, torch.Generator().manual_seed(5))
    with eval_mode(model):
        for _ in range(7):
            x_ref = threat.step(x_ref, input_grad(model, x_ref, y, cross_entropy), x)
    assert torch.equal(x_adv, x_ref)


def test_options_reach_the_attack(trained):
    model, x, y = trained
    plain = _run("pgd10", model, x, y)
    assert not torch.equal(plain, _run("pgd10", model, x, y, temperature=0.01))
    assert not torch.equal(plain, _run("pgd10", model, x, y, loss="cw"))
    assert not torch.equal(plain, _run("pgd10", model, x, y, random_start=False))


@pytest.mark.parametrize(
    "spec, step, random_start, cls",
    [("fgsm", 0.1, False, FGSM), ("fgsm-rs", 0.125, True, FGSM), ("pgd", 0.0125, True, PGD),
     ("PGD40", 0.00625, True, PGD), ("pgd10", 0.025, True, PGD)],
)
def test_factory_defaults(spec, step, random_start, cls):
    attack = create_attack(spec, nn.Identity(), 0.1)
    assert type(attack) is cls and attack.random_start is random_start
    assert attack.threat.eps == 0.1 and attack.threat.step_size == pytest.approx(step)
    assert create_attack(spec, nn.Identity(), 0.1, step_size=0.003).threat.step_size == 0.003


def test_every_registered_attack_is_under_contract():
    covered = {parse_spec(p.values[0])[0] for p in SPECS if p.values[0] != "fgm"}
    covered |= {parse_spec(p.values[0])[0] for p in L2_SPECS}
    assert covered == set(attack_names())
    assert {"fgsm", "fgsm-rs", "pgd", "cw-inf", "cw-margin", "tpgd", "nattack", "transfer", "apgd-ce",
            "apgd-t", "fab-t", "square", "autoattack"} <= set(attack_names())


@pytest.mark.parametrize(
    "spec, eps, kwargs, message",
    [("nope", 0.1, {}, "unknown attack 'nope'; known: fgsm, fgsm-rs, pgd"),
     ("pgd10", -0.1, {}, "eps must be in"), ("fgsm", 1.5, {}, "eps must be in"),
     ("pgd0", 0.1, {}, "steps must be >= 1"), ("pgd", 0.1, {"steps": 0}, "steps must be >= 1"),
     ("pgd10", 0.1, {"steps": 20}, "fixes 10 steps"),
     ("pgd10", 0.1, {"restarts": 0}, "restarts must be >= 1"),
     ("pgd10", 0.1, {"temperature": 0.0}, "temperature must be > 0"),
     ("fgsm-rs", 0.1, {"temperature": -1.0}, "temperature must be > 0"),
     ("pgd10", 0.1, {"loss": "l2"}, "unknown loss 'l2'; known: ce, cw"),
     ("fgsm", 0.1, {"restarts": 2}, "takes no option restarts"),
     ("pgd10", 0.1, {"restarts": 2, "keep_best": False}, "needs keep_best=True"),
     ("pgd10", 0.1, {"step_size": -0.01}, "step size must be >= 0")],
)
def test_validation_errors(spec, eps, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        create_attack(spec, nn.Identity(), eps, **kwargs)
    assert "\n" not in str(error.value)


def test_losses_are_sums_with_temperature_and_margin():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 2])
    mean = nn.functional.cross_entropy(logits, y)
    assert cross_entropy(logits, y) == pytest.approx(2 * mean.item())
    assert cross_entropy(logits, y, 0.5) == pytest.approx(cross_entropy(2 * logits, y).item())
    assert make_loss("ce", 0.5)(logits, y) == pytest.approx(cross_entropy(logits, y, 0.5).item())
    assert cw_margin(logits, y) == pytest.approx((0.5 - 2.0) + (3.0 - 1.0))
    assert make_loss("cw", 0.5)(logits, y) == pytest.approx(2 * cw_margin(logits, y).item())
