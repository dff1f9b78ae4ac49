"""The robust-fairness methods frl, dafa, wat, cfa: their update rules against the papers' formulas on
hand-computable cases, their attack radii, the validation split, and an exact resume mid-epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from classwise.config import AttackConfig, FairnessConfig, TrainConfig, load_config
from classwise.data import as_float
from classwise.errors import ClasswiseError
from classwise.models import Classifier, Normalize
from classwise.runs import load_run_data
from classwise.train.loop import Trainer
from classwise.train.objectives import create_objective
from classwise.train.objectives.cfa import CFA, ccm_scale, ccr_weight, cfa_losses, fawa_update
from classwise.train.objectives.dafa import dafa_losses, dafa_weights
from classwise.train.objectives.fair import ClassStats, scaled_kl_attack
from classwise.train.objectives.frl import cap_sum, frl_losses, frl_update, frl_weights
from classwise.train.objectives.trades import kl_attack, trades_losses
from classwise.train.objectives.wat import hedge_weights, wat_losses

pytestmark = pytest.mark.usefixtures("one_thread")
FAIR = ("frl", "dafa", "wat", "cfa")


def stats(clean: list[float], adv: list[float], n: float = 10.0, probs: np.ndarray | None = None,
          loss: list[float] | None = None) -> ClassStats:
    k = len(clean)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return ClassStats(count=t([n] * k), clean_correct=t(clean), adv_correct=t(adv),
                      probs_sum=t(np.zeros((k, k)) if probs is None else probs * n),
                      loss_sum=t([0.0] * k if loss is None else [v * n for v in loss]))


def logits(seed: int, b: int = 6, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, generator=g, dtype=torch.float64), torch.randn(b, k, generator=g, dtype=torch.float64),
            torch.arange(b) % k)


# ---- FRL ------------------------------------------------------------------------

def test_frl_raises_the_weight_of_a_class_whose_clean_error_exceeds_the_average():
    """Class 2 is made harder (clean error 0.7 against 0.3 overall): eq. 8-9 with rate 0.05, tau 0.1."""
    lam = frl_update(torch.zeros(3, 3, dtype=torch.float64), stats([9, 9, 3], [5, 5, 1]),
                     tau_nat=0.1, tau_bndy=0.1, rate=0.05, rate_eps=0.1, lim=0.5)
    gamma_nat = np.array([0.1, 0.1, 0.7]) - 0.3 - 0.1  # phi_nat(c) - R_nat - tau
    gamma_bndy = np.array([0.4, 0.4, 0.2]) - 10 / 30 - 0.1  # phi_bndy(c) - R_bndy - tau
    np.testing.assert_allclose(lam[0].numpy(), np.maximum(0.05 * gamma_nat, 0))  # [0, 0, 0.015]
    np.testing.assert_allclose(lam[1].numpy(), np.maximum(2 * 0.05 * gamma_bndy, 0))  # all satisfied: 0
    np.testing.assert_allclose(lam[2].numpy(), 0.1 * gamma_bndy)
    w = frl_weights(lam).numpy()
    np.testing.assert_allclose(w[0], 1 / 3 + lam[0].numpy() - lam[0].numpy().mean())
    assert w[0][2] > w[0][0] == w[0][1] and w[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w[1], [1 / 3] * 3)


def test_frl_remargin_widens_the_radius_of_a_class_with_a_large_boundary_error():
    lam = frl_update(torch.zeros(3, 3, dtype=torch.float64), stats([9, 9, 9], [8, 8, 0]),
                     tau_nat=0.1, tau_bndy=0.1, rate=0.05, rate_eps=0.1, lim=0.5)
    gamma = np.array([0.1, 0.1, 0.9]) - 11 / 30 - 0.1
    scale = frl_weights(lam)[2].numpy()
    np.testing.assert_allclose(scale, np.clip(np.exp(2 * 0.1 * gamma), 0.98, 2.5))  # [0.98, 0.98, 1.0905]
    assert scale[2] == pytest.approx(np.exp(0.2 * (0.9 - 11 / 30 - 0.1))) and scale[2] > 1.09


def test_frl_multipliers_are_capped_to_their_sum_limit():
    np.testing.assert_allclose(cap_sum(torch.tensor([0.4, -0.2, 0.6]), 0.5).numpy(), [0.2, 0.0, 0.3])
    np.testing.assert_allclose(cap_sum(torch.tensor([0.1, 0.2, -0.1]), 0.5).numpy(), [0.1, 0.2, 0.0])


def test_frl_loss_is_the_reference_weighted_sum_and_trades_with_zero_multipliers():
    clean, adv, y = logits(0)
    lam = torch.tensor([[0.0, 0.1, 0.3], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    w = frl_weights(lam)
    wn, wb = w[0][y], w[1][y]
    ce_kl = trades_losses(clean, adv, y, 0.0), trades_losses(clean, adv, y, 1.0) - trades_losses(clean, adv, y, 0.0)
    expected = (wn * ce_kl[0]).sum() / wn.sum() + 6.0 * (wb * ce_kl[1]).sum() / wb.sum()
    assert frl_losses(clean, adv, y, w, 6.0).mean().item() == pytest.approx(expected.item(), rel=1e-12)
    plain = frl_losses(clean, adv, y, frl_weights(torch.zeros(3, 3, dtype=torch.float64)), 6.0)
    torch.testing.assert_close(plain, trades_losses(clean, adv, y, 6.0), rtol=1e-12, atol=0)


# ---- DAFA -----------------------------------------------------------------------

def test_dafa_weights_move_weight_to_the_hard_class_from_the_classes_it_is_confused_with():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    w = dafa_weights(p, lam=1.0).numpy()
    # class 0 (p_00 = 0.5, hardest) gains p_01 p_11 + p_02 p_22; the easier ones lose p_ij p_jj to harder j
    np.testing.assert_allclose(w, [1 + 0.3 * 0.7 + 0.2 * 0.8, 1 - 0.2 * 0.5 + 0.1 * 0.8, 1 - 0.1 * 0.5 - 0.1 * 0.7])
    np.testing.assert_allclose(dafa_weights(p, lam=0.5).numpy() - 1, (w - 1) / 2)


def test_dafa_loss_weighs_the_clean_term_only():
    clean, adv, y = logits(1)
    w = torch.tensor([1.37, 0.98, 0.88], dtype=torch.float64)
    ce = trades_losses(clean, adv, y, 0.0)
    expected = w[y] * ce + 6.0 * (trades_losses(clean, adv, y, 1.0) - ce)
    torch.testing.assert_close(dafa_losses(clean, adv, y, w, 6.0), expected, rtol=1e-12, atol=1e-12)


def test_class_radius_attack_stays_in_each_examples_ball_and_is_kl_attack_without_scales():
    torch.manual_seed(0)
    model = Classifier(Normalize(0.0, 1.0, 1), nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()),
                       nn.Linear(8, 3)).double()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64) * 0.5 + 0.25
    spec = create_objective(TrainConfig(method="dafa", attack=AttackConfig("pgd10", 0.1, 0.05)))
    from classwise.train.objectives.base import training_attack
    threat = training_attack(spec.cfg.attack, model, 0.1).threat
    scale = torch.tensor([1.5, 0.5, 1.0, 1.5, 0.5, 1.0], dtype=torch.float64)
    adv = scaled_kl_attack(model, x, threat, 10, torch.Generator().manual_seed(3), scale, scale)
    dist = (adv - x).abs().flatten(1).max(1).values
    assert torch.all(dist <= 0.1 * scale + 1e-12) and dist[0] > 0.1 and torch.all(adv >= 0) and torch.all(adv <= 1)
    a = scaled_kl_attack(model, x, threat, 3, torch.Generator().manual_seed(3), None)
    assert torch.equal(a, kl_attack(model, x, threat, 3, torch.Generator().manual_seed(3)))


# ---- WAT ------------------------------------------------------------------------

def test_wat_hedge_weights_follow_exponentiated_cumulative_costs():
    cost = torch.tensor([1.0, 2.0, 0.5, 1.2], dtype=torch.float64)  # 3 classes + the average expert
    w = hedge_weights(cost, eta=0.1).numpy()
    e = np.exp(0.1 * cost.numpy())
    np.testing.assert_allclose(w, 3 * e / e.sum(), rtol=1e-12)
    assert w.sum() == pytest.approx(3.0) and w.argmax() == 1  # the costliest class weighs most
    np.testing.assert_allclose(hedge_weights(torch.zeros(4), 0.1).numpy(), [0.75] * 4)


def test_wat_loss_adds_the_average_experts_share():
    clean, adv, y = logits(2)
    w = torch.tensor([1.2, 0.6, 0.7, 0.5], dtype=torch.float64)
    torch.testing.assert_close(wat_losses(clean, adv, y, w, 6.0), (w[y] + 0.5) * trades_losses(clean, adv, y, 6.0))


def test_class_stats_rates():
    s = stats([9, 6, 3], [5, 5, 1], probs=np.eye(3), loss=[0.5, 1.0, 2.0])
    np.testing.assert_allclose(s.clean_error.numpy(), [0.1, 0.4, 0.7])
    np.testing.assert_allclose(s.boundary_error.numpy(), [0.4, 0.1, 0.2])
    np.testing.assert_allclose(s.similarity.numpy(), np.eye(3))
    np.testing.assert_allclose(s.mean_loss.numpy(), [0.5, 1.0, 2.0])


# ---- CFA ------------------------------------------------------------------------

def test_cfa_calibrates_radius_and_kl_weight_by_class_robustness():
    """CCM eps_y = (lambda_1 + t_y) eps, CCR b_y = beta_y / (1 + beta_y), beta_y = (lambda_2 + t_y) beta."""
    t = torch.tensor([0.6, 0.6, 0.1], dtype=torch.float64)  # class 2 made harder
    np.testing.assert_allclose(ccm_scale(t, 0.5).numpy(), [1.1, 1.1, 0.6])
    np.testing.assert_allclose(ccr_weight(t, 0.5, 6.0).numpy(), [6.6 / 7.6, 6.6 / 7.6, 3.6 / 4.6])
    clean, adv, y = logits(3)
    b = ccr_weight(t, 0.5, 6.0)
    ce = trades_losses(clean, adv, y, 0.0)
    expected = (1 - b[y]) * ce + b[y] * (trades_losses(clean, adv, y, 1.0) - ce)
    torch.testing.assert_close(cfa_losses(clean, adv, y, b), expected, rtol=1e-12, atol=1e-12)
    uniform = torch.full((3,), 6.0 / 7.0, dtype=torch.float64)  # before calibration: TRADES / (1 + beta)
    torch.testing.assert_close(cfa_losses(clean, adv, y, uniform), trades_losses(clean, adv, y, 6.0) / 7.0)


def pattern_model(good: bool) -> nn.Module:
    """3 classes on 4x4 images, class c lit at pixel c: ``good`` reads pixel c (every class right,
    beyond an eps-0.1 attack), else a constant vote for class 0 (classes 1 and 2 always wrong)."""
    head = nn.Linear(16, 3)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0] if good else [1.0, 0.0, 0.0]))
        if good:
            head.weight[[0, 1, 2], [0, 1, 2]] = 10.0
    return Classifier(Normalize(0.0, 1.0, 1), nn.Flatten(), head)


def pattern_data(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(3).repeat(per_class)
    x = torch.zeros(len(y), 1, 4, 4, dtype=torch.uint8)
    x.view(len(y), 16)[torch.arange(len(y)), y] = 255
    return x, y


def cfa_objective(**fair) -> CFA:
    cfg = TrainConfig(method="cfa", beta=6.0, attack=AttackConfig("pgd3", 0.1, 0.05),
                      fair=FairnessConfig(**{"cfa_begin": 2, **fair}))
    objective = create_objective(cfg)
    assert isinstance(objective, CFA)
    objective.validation = pattern_data(4)
    return objective


def test_cfa_update_gives_the_harder_class_a_smaller_radius_and_kl_weight_from_its_tally():
    """An epoch in which class 2 is robust on 1 of 10 examples and classes 0, 1 on 6: from epoch
    ``cfa_begin`` on its radius and KL weight are the paper's, from t = (0.6, 0.6, 0.1); before, uniform."""
    obj = cfa_objective()
    x, y = pattern_data(2)
    model = pattern_model(good=True)
    loss, adv = obj(model, as_float(x), y, 0.1, torch.Generator().manual_seed(0))  # the step tallies itself
    assert torch.isfinite(loss) and obj.tally.total is not None and obj.tally.total.tolist() == [2, 2, 2]
    obj.tally.reset()
    hits = {0: 6, 1: 6, 2: 1}
    for c, n in hits.items():  # 10 examples per class, n of them right
        fake = torch.zeros(10, 3)
        fake[:n, c] = 1.0
        fake[n:, (c + 1) % 3] = 1.0
        obj.tally.add(fake, torch.full((10,), c))
    obj.end_epoch(1, model)
    obj.begin_epoch(1, model, x, y)  # before cfa_begin = 2: uniform
    assert obj.eps_scale is None and obj.ccr is None and obj.tally.total is None
    obj.begin_epoch(2, model, x, y)
    t = np.array([0.6, 0.6, 0.1])
    np.testing.assert_allclose(obj.eps_scale.numpy(), 0.5 + t, rtol=1e-6)  # class 2: 0.6 eps, the others 1.1 eps
    np.testing.assert_allclose(obj.ccr.numpy(), (0.5 + t) * 6 / (1 + (0.5 + t) * 6), rtol=1e-6)
    assert obj.epoch_metrics()["cfa_eps_scale"] == [1.1, 1.1, 0.6]


def test_cfa_attack_radius_follows_the_class():
    """With eps scales (1.1, 1.1, 0.6) the training attack moves class-2 examples by at most 0.6 eps."""
    obj = cfa_objective()
    obj.eps_scale = torch.tensor([1.1, 1.1, 0.6])
    x, y = pattern_data(2)
    seen = []
    model = pattern_model(good=True)
    forward = model.forward
    model.forward = lambda inp: (seen.append(inp.detach()), forward(inp))[1]  # type: ignore[method-assign]
    obj(model, as_float(x), y, 0.1, torch.Generator().manual_seed(0))
    dist = (seen[-1] - as_float(x)).abs().flatten(1).max(1).values  # the last forward: x'
    assert torch.all(dist <= 0.1 * obj.eps_scale[y] + 1e-6) and dist[y == 0].max() > 0.1 + 1e-3


def test_fawa_averages_only_the_epochs_whose_worst_class_passes_the_threshold():
    obj = cfa_objective(cfa_threshold=0.5, cfa_decay=0.88)
    good, bad = pattern_model(good=True), pattern_model(good=False)
    obj.end_epoch(0, bad)  # worst class 0%: no average yet
    assert obj.fawa is None and obj.extra_checkpoints() == {} and obj.val_worst == 0.0
    obj.end_epoch(1, good)  # every class 100%: the first entry is a copy
    first = {k: v.clone() for k, v in good.state_dict().items()}
    assert obj.val_worst == 1.0 and obj.fawa_epochs == 1
    assert all(torch.equal(obj.fawa[k], first[k]) for k in first)
    obj.end_epoch(2, bad)  # fails: the average stays
    assert obj.fawa_epochs == 1 and all(torch.equal(obj.fawa[k], first[k]) for k in first)
    with torch.no_grad():
        good.head.weight.mul_(2.0)
        good.head.bias.add_(0.5)
    obj.end_epoch(3, good)  # passes: 0.88 * average + 0.12 * model
    assert obj.fawa_epochs == 2 and set(obj.extra_checkpoints()) == {"fawa"}
    for k, v in good.state_dict().items():
        torch.testing.assert_close(obj.fawa[k], 0.88 * first[k] + 0.12 * v, rtol=1e-6, atol=1e-6)
    assert not torch.equal(obj.fawa["head.weight"], good.state_dict()["head.weight"])


def test_fawa_copies_integer_buffers_and_leaves_its_inputs_alone():
    avg = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    new = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = fawa_update(avg, new, 0.75)
    torch.testing.assert_close(out["w"], torch.tensor([1.5, 3.0]))
    assert out["n"].item() == 5 and out["n"].dtype == torch.int64 and avg["w"].tolist() == [1.0, 2.0]


# ---- through the training loop ----------------------------------------------------

def fair_config(overrides: list[str], extra: tuple[str, ...] = ()):
    return load_config("demo", [*overrides, "train.epochs=2", "train.checkpoint_every=1", *extra])


class Stop(Exception):
    pass


def train(config, run, stop_at: int | None = None) -> Trainer:
    """Train (resuming from ``run``'s state if any); with ``stop_at``, stop before that 1-based step."""
    run.mkdir(exist_ok=True)
    trainer = Trainer(config, load_run_data(config), run, progress=False)
    trainer.restore()
    step, calls = trainer._step, [0]

    def counted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == stop_at:
            raise Stop
        step(*args, **kwargs)

    trainer._step = counted  # type: ignore[method-assign]
    try:
        trainer.fit()
    except Stop:
        pass
    return trainer


@pytest.mark.parametrize("method", FAIR)
def test_interrupted_mid_epoch_then_resumed_gives_the_same_weights(method, tmp_path, method_overrides):
    """2 epochs of 2 steps; the interrupted run stops before step 4 (a state after step 3 is on disk)."""
    config = fair_config(method_overrides(method), ("train.fair.dafa_warmup=1",))
    straight = train(config, tmp_path / "straight")
    train(config, tmp_path / "cut", stop_at=4)
    state = json.loads((tmp_path / "cut" / "validation.json").read_text())
    assert state["examples"] == 20 and state["training_images_left"] == 80
    resumed = train(config, tmp_path / "cut")
    a = load_file(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    key = {"frl": "frl_lambda", "dafa": "dafa_weights", "wat": "wat_cost", "cfa": "cfa_ccr"}[method]
    mine, theirs = straight.objective.state_dict()[key], resumed.objective.state_dict()[key]
    assert mine is not None and torch.equal(mine, theirs)  # the class weights of epoch 2 came back exactly
    if method == "cfa":  # the FAWA average (threshold 0: both epochs entered) came back exactly too
        fa = load_file(tmp_path / "straight" / "checkpoints" / "fawa.safetensors")
        fb = load_file(tmp_path / "cut" / "checkpoints" / "fawa.safetensors")
        assert fa.keys() == a.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
        assert resumed.objective.fawa_epochs == 2 and any(not torch.equal(fa[k], a[k]) for k in a)
    init = Trainer(config, load_run_data(config), tmp_path / "init", progress=False).module.state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a if init[k].is_floating_point())


def test_validation_split_is_held_out_and_recorded(tmp_path, method_overrides):
    config = fair_config(method_overrides("wat"))
    trainer = Trainer(config, load_run_data(config), tmp_path, progress=False)
    record = json.loads((tmp_path / "validation.json").read_text())
    full = load_run_data(config).train_y
    idx = torch.tensor(record["indices"])
    assert len(trainer.data.train_y) == len(full) - len(idx) == record["training_images_left"]
    assert torch.bincount(full[idx]).tolist() == [2] * 10 and record["seed"] == config.seed
    assert trainer.objective.validation is not None and torch.equal(trainer.objective.validation[1], full[idx])
    Trainer(config, load_run_data(config), tmp_path / "again", progress=False)
    assert json.loads((tmp_path / "again" / "validation.json").read_text()) == record  # reproducible


@pytest.mark.parametrize("overrides, match", [
    (["train.fair.frl_lim=1"], "frl_lim"),
    (["train.fair.dafa_lambda=2"], "dafa_lambda"),
    (["train.fair.val_examples=0"], "val_examples"),
    (["train.fair.cfa_ccm_lambda=0"], "cfa_ccm_lambda"),
    (["train.fair.cfa_decay=1"], "cfa_decay"),
    (["train.fair.cfa_threshold=1.5"], "cfa_threshold"),
])
def test_bad_fairness_settings_fail_with_a_clear_error(overrides, match):
    with pytest.raises(ClasswiseError, match=match):
        load_config("demo", overrides)
