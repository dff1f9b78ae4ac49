"""Contracts of the training objectives, their schedules and the class-wise defences.

Hand computations use a 2-layer linear model with known weights and two
classes: its input gradient of the cross-entropy has a sign pattern that does
not depend on x, so PGD (and FGSM-RS with step 2 eps) ends exactly at the
corner x + eps * sign(d) and every attack-based loss has a closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from classwise.config import AttackConfig, TrainConfig, load_config, preset_names
from classwise.errors import ClasswiseError
from classwise.models import Classifier, HEHead, Normalize, margin_logits, use_he_head
from classwise.runs import load_run_data
from classwise.train.objectives import OBJECTIVES, check_method, create_objective
from classwise.train.objectives.defences import class_weights, norm_spread_penalty
from classwise.train.objectives.he_cmp import mean_max_prob, probe_cosines, solve_scale
from classwise.train.objectives.mart import mart_losses
from classwise.train.objectives.trades import trades_losses
from classwise.train.schedules import cmp_target, lis_scale, lr_at, make_scheduler

EPS = 0.1
W1 = np.array([[0.5, -0.3, 0.2, 0.1], [-0.2, 0.4, 0.3, -0.5], [0.3, 0.2, -0.4, 0.6]])  # (3, 4)
B1 = np.array([0.1, -0.1, 0.05])
W2 = np.array([[0.7, -0.4, 0.2], [-0.3, 0.5, 0.6]])  # (2, 3)
B2 = np.array([0.05, -0.05])
X = np.array([[0.3, 0.6, 0.5, 0.4], [0.7, 0.2, 0.4, 0.6], [0.5, 0.5, 0.3, 0.7], [0.4, 0.3, 0.6, 0.2]])
Y = np.array([0, 1, 1, 0])


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model(he: bool = False, scale: float = 2.0, margin: float = 0.2) -> Classifier:
    """images (B, 1, 2, 2) -> flatten -> W1 x + b1 (3) -> W2 z + b2 (2); float64."""
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    model = Classifier(Normalize(0.0, 1.0, 1), body, nn.Linear(3, 2)).double()
    with torch.no_grad():
        body[1].weight.copy_(torch.tensor(W1)), body[1].bias.copy_(torch.tensor(B1))
        model.head.weight.copy_(torch.tensor(W2)), model.head.bias.copy_(torch.tensor(B2))
    if he:
        use_he_head(model, scale, margin).double()
        with torch.no_grad():
            model.head.weight.copy_(torch.tensor(W2))
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(X).view(4, 1, 2, 2), torch.tensor(Y)


def cfg(method: str, **kw) -> TrainConfig:
    attack = kw.pop("attack", AttackConfig("pgd10", EPS, 0.05))
    return TrainConfig(method=method, attack=attack, milestones=(), **kw)


# ---- numpy hand computations -------------------------------------------------

def np_features(x: np.ndarray) -> np.ndarray:
    return x @ W1.T + B1


def np_logits(x: np.ndarray) -> np.ndarray:
    return np_features(x) @ W2.T + B2


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_ce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np_softmax(z)[np.arange(len(y)), y])


def np_corner(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PGD's end point: CE grad = (p_other) * W1^T (w2_other - w2_y), its sign is fixed."""
    d = np.stack([W1.T @ (W2[1 - c] - W2[c]) for c in y])  # (B, 4)
    return np.clip(x + EPS * np.sign(d), 0, 1)


def np_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(1)


def np_cos(x: np.ndarray) -> np.ndarray:
    z = np_features(x)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    w = W2 / np.linalg.norm(W2, axis=1, keepdims=True)
    return z @ w.T


def loss_of(method: str, eps: float = EPS, **kw) -> float:
    model = linear_model(he=method.startswith("he"), scale=2.0, margin=0.2)
    x, y = batch()
    loss, _ = create_objective(cfg(method, **kw))(model, x, y, eps, torch.Generator().manual_seed(0))
    return loss.item()


# ---- losses against hand computations ----------------------------------------

def test_registry_matches_config_and_paper_methods():
    assert set(OBJECTIVES) == {"standard", "pgd-at", "fgsm-rs", "trades", "mart", "he", "he-lis", "he-cmp",
                               "frl", "dafa", "wat", "cfa"}
    with pytest.raises(ClasswiseError, match="unknown training method 'nope'.*he-cmp"):
        check_method(TrainConfig(method="nope"))


def test_standard_is_mean_clean_cross_entropy():
    assert loss_of("standard") == pytest.approx(np_ce(np_logits(X), Y).mean(), abs=1e-10)


def test_pgd_at_loss_at_the_closed_form_adversarial_point():
    assert loss_of("pgd-at") == pytest.approx(np_ce(np_logits(np_corner(X, Y)), Y).mean(), abs=1e-10)


def test_fgsm_rs_with_step_two_eps_reaches_the_corner():
    attack = AttackConfig("fgsm-rs", EPS, 2 * EPS)
    expected = np_ce(np_logits(np_corner(X, Y)), Y).mean()
    assert loss_of("fgsm-rs", attack=attack) == pytest.approx(expected, abs=1e-10)


def test_trades_and_mart_losses_on_fixed_points():
    clean, adv = np_logits(X), np_logits(np_corner(X, Y))
    p, q = np_softmax(clean), np_softmax(adv)
    beta = 6.0
    trades = np_ce(clean, Y) + beta * np_kl(p, q)
    got = trades_losses(torch.tensor(clean), torch.tensor(adv), torch.tensor(Y), beta)
    np.testing.assert_allclose(got.numpy(), trades, atol=1e-10)
    wrong = q[np.arange(4), 1 - Y]  # two classes: the best wrong class is the other one
    kl12 = (p * (np.log(p) - np.log(q + 1e-12))).sum(1)
    mart = np_ce(adv, Y) - np.log(1.0001 - wrong + 1e-12) + beta * kl12 * (1.0000001 - p[np.arange(4), Y])
    got = mart_losses(torch.tensor(clean), torch.tensor(adv), torch.tensor(Y), beta)
    np.testing.assert_allclose(got.numpy(), mart, atol=1e-10)


def test_trades_objective_at_eps_zero_is_clean_cross_entropy():
    assert loss_of("trades", eps=0.0) == pytest.approx(np_ce(np_logits(X), Y).mean(), abs=1e-10)


def test_mart_objective_at_the_closed_form_adversarial_point():
    clean, adv = np_logits(X), np_logits(np_corner(X, Y))
    p, q = np_softmax(clean), np_softmax(adv)
    kl = (p * (np.log(p) - np.log(q + 1e-12))).sum(1)
    bce = np_ce(adv, Y) - np.log(1.0001 - q[np.arange(4), 1 - Y] + 1e-12)
    expected = (bce + 6.0 * kl * (1.0000001 - p[np.arange(4), Y])).mean()
    assert loss_of("mart") == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("method", ["he", "he-lis", "he-cmp"])
def test_he_loss_is_cross_entropy_of_scaled_cosine_with_margin(method):
    s, m = 2.0, 0.2  # eps 0: cosine logits are not linear in x, so no closed-form corner
    z = s * (np_cos(X) - m * np.eye(2)[Y])
    assert loss_of(method, eps=0.0) == pytest.approx(np_ce(z, Y).mean(), abs=1e-10)


def test_he_head_outputs_scaled_cosine_and_margin_on_true_class():
    head = HEHead(3, 2, scale=4.0, margin=0.3).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor(W2))
    z = torch.tensor(np_features(X))
    logits = head(z)
    np.testing.assert_allclose(logits.detach().numpy(), 4.0 * np_cos(X), atol=1e-12)
    shifted = margin_logits(logits, torch.tensor(Y), head.scale, head.margin)
    np.testing.assert_allclose(shifted.detach().numpy(), 4.0 * (np_cos(X) - 0.3 * np.eye(2)[Y]), atol=1e-12)
    assert head.weight.shape == (2, 3) and "scale" in head.state_dict()


@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_a_few_steps_lower_the_loss(method):
    torch.manual_seed(0)
    model = linear_model(he=method.startswith("he"), scale=5.0, margin=0.0)
    x, y = batch()
    attack = AttackConfig("fgsm-rs", 0.05, None) if method == "fgsm-rs" else AttackConfig("pgd5", 0.05, 0.02)
    objective = create_objective(cfg(method, attack=attack, epochs=1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(15):
        loss, logits = objective(model, x, y, 0.05, torch.Generator().manual_seed(1))
        assert logits.shape == (4, 2) and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ---- temperature schedules ----------------------------------------------------

def test_he_lis_schedule_endpoints_and_head_update():
    assert lis_scale(0, 100, 1.0, 75.0) == 1.0 and lis_scale(99, 100, 1.0, 75.0) == 75.0
    assert lis_scale(50, 101, 1.0, 75.0) == pytest.approx(38.0)
    model, (x, y) = linear_model(he=True), batch()
    objective = create_objective(cfg("he-lis", epochs=10))
    objective.begin_epoch(9, model, x, y)
    assert float(model.head.scale) == 75.0 and objective.state_dict()["he_scale"] == 75.0


def test_he_cmp_target_schedule():
    assert cmp_target(0, 100, 0.2, 1.0, 0.9) == pytest.approx(0.2)
    assert cmp_target(45, 100, 0.2, 1.0, 0.9) == pytest.approx(0.6)
    assert cmp_target(90, 100, 0.2, 1.0, 0.9) == 1.0 and cmp_target(99, 100, 0.2, 1.0, 0.9) == 1.0


@pytest.mark.parametrize("target", [0.2, 0.5, 0.9, 0.999])
def test_he_cmp_solver_hits_its_target(target):
    rng = np.random.default_rng(0)
    z, w = rng.normal(size=(200, 16)), rng.normal(size=(10, 16))
    cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    s = solve_scale(cos, target, x0=1.0, lo=0.01, hi=1e4)
    assert abs(mean_max_prob(cos, s) - target) < 1e-3
    assert solve_scale(cos, 0.05, 1.0, 0.01, 1e4) == 0.01  # below 1/K: the lower bound


def test_he_cmp_begin_epoch_sets_the_solved_scale():
    model, (x, y) = linear_model(he=True), batch()
    objective = create_objective(cfg("he-cmp", epochs=10))
    objective.begin_epoch(4, model, x, y)  # target 0.2 + 4/9 * 0.8
    cos = probe_cosines(model, x, y, 1000)
    assert mean_max_prob(cos, float(model.head.scale)) == pytest.approx(0.2 + 4 / 9 * 0.8, abs=1e-3)
    assert objective.epoch_metrics()["he_scale"] == float(model.head.scale)


# ---- learning-rate schedules ---------------------------------------------------

def test_cyclic_lr_rises_to_peak_at_half_then_falls_to_zero_per_batch():
    config = TrainConfig(method="standard", schedule="cyclic", epochs=4, lr=0.2, milestones=())
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = make_scheduler(config, opt, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(0.2) and lrs[20] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(lrs[:11]) > 0) and np.all(np.diff(lrs[10:]) < 0)


def test_imagenet_preset_follows_the_three_stage_lr_schedule():
    train = load_config("imagenet").train
    assert train.method == "fgsm-rs" and train.epochs == 15 and train.schedule == "piecewise"
    got = [lr_at(train, e) for e in (0, 1, 6, 12, 15)]
    assert got == pytest.approx([0.0, 0.4, 0.04, 0.004, 0.0004])


# ---- class-wise defences -------------------------------------------------------

def test_class_weights_formula():
    w = class_weights(torch.tensor([9.0, 5.0, 0.0]), torch.tensor([10.0, 10.0, 10.0]), gamma=1.0)
    np.testing.assert_allclose(w.numpy(), 3 * np.array([0.1, 0.5, 1.0]) / 1.6, rtol=1e-6)
    w2 = class_weights(torch.tensor([9.0, 5.0, 10.0]), torch.tensor([10.0, 10.0, 10.0]), gamma=2.0)
    e = np.array([0.01, 0.25, 1e-4])  # a fully robust class keeps the floor 0.01 ** gamma
    np.testing.assert_allclose(w2.numpy(), 3 * e / e.sum(), rtol=1e-5)
    assert w2.mean().item() == pytest.approx(1.0)


def test_class_weights_come_from_the_previous_epoch_and_weigh_the_loss():
    model, (x, y) = linear_model(), batch()
    objective = create_objective(cfg("standard", class_weight_gamma=1.0))
    objective.begin_epoch(0, model, x, y)
    objective(model, x, y, 0.0, torch.Generator())  # epoch 0: tally only, plain mean
    objective.begin_epoch(1, model, x, y)
    hit = np_logits(X).argmax(1) == Y
    acc = np.array([hit[Y == c].mean() for c in (0, 1)])
    w = np.maximum(1 - acc, 0.01)
    w = 2 * w / w.sum()
    loss, _ = objective(model, x, y, 0.0, torch.Generator())
    assert loss.item() == pytest.approx((w[Y] * np_ce(np_logits(X), Y)).mean(), rel=1e-6)


def test_weight_norm_penalty_reduces_norm_spread():
    def spread_after(penalty: float) -> float:
        torch.manual_seed(0)
        model, (x, y) = linear_model(), batch()
        with torch.no_grad():
            model.head.weight[1] *= 4  # unequal class norms
        objective = create_objective(cfg("standard", weight_norm_penalty=penalty))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(30):
            loss, _ = objective(model, x, y, 0.0, torch.Generator())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return norm_spread_penalty(model.head.weight).item()

    assert spread_after(1.0) < 0.5 * spread_after(0.0)


# ---- config validation and presets --------------------------------------------

@pytest.mark.parametrize("overrides, match", [
    (["train.method=he"], "model.head.name: he"),
    (["train.method=fgsm-rs"], "fgsm-rs"),
    (["train.schedule=piecewise", "train.lr_epochs=[0, 1]"], "lr_values"),
    (["train.schedule=weird"], "schedule"),
    (["model.head.name=cosine"], "head.name"),
    (["train.beta=-1"], "beta"),
    (["train.class_weight_gamma=-1"], "class_weight_gamma"),
    (["train.he.pmax_clip=1.0"], "pmax_clip"),
])
def test_bad_settings_fail_with_a_clear_error(overrides, match):
    with pytest.raises(ClasswiseError, match=match):
        config = load_config("demo", overrides)  # the config's own checks, then the method's rules
        check_method(config.train, config.model)


@pytest.mark.parametrize("name, method", [
    ("trades-cifar10", "trades"), ("mart-cifar10", "mart"), ("fgsm-rs-cifar10", "fgsm-rs"),
    ("he-cifar10", "he"), ("he-lis-cifar10", "he-lis"), ("he-cmp-cifar10", "he-cmp"), ("imagenet", "fgsm-rs"),
    ("frl-cifar10", "frl"), ("dafa-cifar10", "dafa"), ("wat-cifar10", "wat"), ("cfa-cifar10", "cfa"),
])
def test_method_presets_load(name, method):
    assert name in preset_names()
    assert load_config(name).train.method == method


# ---- end to end through the pipeline -------------------------------------------

@pytest.mark.parametrize("method", sorted(OBJECTIVES))
def test_one_epoch_through_train_run(method, tmp_path, method_overrides):
    from classwise import pipeline
    from classwise.fileio import read_jsonl
    from classwise.checkpoint import load_state
    from classwise.train.loop import Trainer

    run = pipeline.train_run(load_config("demo", method_overrides(method)), tmp_path / method, progress=False)
    (record,) = read_jsonl(run / "metrics.jsonl")
    assert np.isfinite(record["train_loss"]) and record["epoch"] == 1
    state = load_state(run / "checkpoints" / "last.state.safetensors")
    assert "objective" in state and state["objective"]["tally"]  # class-aware tally of the epoch
    config = load_config(run / "config.yaml")
    trainer = Trainer(config, load_run_data(config), run, progress=False)
    trainer.restore()  # optimiser, (cyclic) scheduler and objective state come back
    assert trainer.epoch == 1 and trainer.scheduler.last_epoch == (2 if method == "fgsm-rs" else 1)  # 2 batches
    if method.startswith("he"):
        assert record["he_scale"] > 0 and state["objective"]["he_scale"] == record["he_scale"]
        assert trainer.objective.scale == record["he_scale"] == pytest.approx(float(trainer.model.head.scale))
