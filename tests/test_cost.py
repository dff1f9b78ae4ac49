"""Cost counting: every attack's forward and input-gradient passes, per example, exactly.

``evaluate`` records "forwards/<attack>" and "backwards/<attack>" (N,) int64 through a
meter on the model's forward (:mod:`classwise.attacks.cost`), so our attacks, the
official AutoAttack and a user's callable are counted alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attack_models import held_out, trained_cnn
from classwise.attacks import PGD, LinfThreat, create_attack
from classwise.attacks.cost import CostMeter, charging
from classwise.results import cost_totals
from classwise.evaluate import EvalOptions, evaluate
from classwise.results import EvalResults

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.1


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(tiny CNN in eval mode, 48 held-out images (48, 1, 28, 28), labels (48,))."""
    return (trained_cnn(0), *held_out(48))


def _eval(model, x, y, attacks, cascade=False) -> EvalResults:
    options = EvalOptions(batch_size=20, device="cpu", progress=False, zero_grad=False)
    return evaluate(model, x, y, attacks, eps=EPS, cascade=cascade, options=options)


def _ok(model, x, y) -> np.ndarray:
    with torch.no_grad():
        return (model(x).argmax(1) == y).numpy()


def test_fgsm_spends_one_gradient_pass_and_the_judging_forward(trained):
    """FGSM on a clean-correct example: one forward with its backward, then the forward that judges it."""
    model, x, y = trained
    res = _eval(model, x, y, ["fgsm"])
    ok = _ok(model, x, y).astype(np.int64)
    assert 0 < ok.sum() < len(y)
    np.testing.assert_array_equal(res.extras["forwards/fgsm"], 2 * ok)
    np.testing.assert_array_equal(res.extras["backwards/fgsm"], ok)
    assert res.extras["forwards/fgsm"].dtype == np.int64


def test_full_batch_pgd_spends_k_gradient_passes_on_every_attacked_example(trained):
    model, x, y = trained
    k = 5
    attack = PGD(model, LinfThreat(EPS, 2.5 * EPS / k), steps=k, compact_every=0)
    res = _eval(model, x, y, {"p": attack})
    ok = _ok(model, x, y).astype(np.int64)
    np.testing.assert_array_equal(res.extras["forwards/p"], (k + 1) * ok)
    np.testing.assert_array_equal(res.extras["backwards/p"], k * ok)


def _first_fooling_step(model, x, y, k) -> np.ndarray:
    """Per example, the first step (0-based) whose forward misclassifies it under full-batch PGD-k (k: never)."""
    preds = []
    handle = model.register_forward_hook(lambda _m, _a, out: preds.append(out.argmax(1)) if out.requires_grad else None)
    try:
        PGD(model, LinfThreat(EPS, 2.5 * EPS / k), steps=k, compact_every=0)(
            x, y, torch.Generator().manual_seed(0), clean_correct=True)
    finally:
        handle.remove()
    wrong = torch.stack(preds) != y  # (k, B)
    return torch.where(wrong.any(0), wrong.int().argmax(0), k).numpy()


def test_compaction_charges_each_example_for_the_steps_it_was_in(trained):
    """Under compaction an example fooled at step s leaves at step s + 1: it pays s + 1 gradient passes
    (k if never fooled), and one judging forward; derived independently from the full-batch trajectory."""
    model, x, y = trained
    k = 6
    ok = _ok(model, x, y)
    x, y = x[torch.from_numpy(ok)], y[torch.from_numpy(ok)]
    steps = np.minimum(_first_fooling_step(model, x, y, k) + 1, k)
    assert len(set(steps.tolist())) >= 3  # examples leave at different steps
    attack = PGD(model, LinfThreat(EPS, 2.5 * EPS / k), steps=k, compact_every=1)
    res = evaluate(model, x, y, {"p": attack}, options=EvalOptions(batch_size=len(y), device="cpu", progress=False,
                                                                   zero_grad=False))
    np.testing.assert_array_equal(res.extras["backwards/p"], steps)
    np.testing.assert_array_equal(res.extras["forwards/p"], steps + 1)


def test_library_attack_is_counted_through_the_model_and_spread_by_batch(trained):
    """Official APGD-CE, 3 steps, one batch of B clean-correct images: our 1-image class-count probe,
    its clean forward (B), a start and 3 steps with gradients (4 B), our judging forward (B).
    Each example was in every gradient pass (4); the 1-row probe goes to the first example."""
    model, x, y = trained
    ok = torch.from_numpy(_ok(model, x, y))
    x, y = x[ok][:16], y[ok][:16]
    res = evaluate(model, x, y, {"a": create_attack("apgd-ce", model, EPS, steps=3)},
                   options=EvalOptions(batch_size=16, device="cpu", progress=False, zero_grad=False))
    b = len(y)
    np.testing.assert_array_equal(res.extras["backwards/a"], np.full(b, 4))
    assert res.extras["forwards/a"].sum() == 1 + b + 4 * b + b
    np.testing.assert_array_equal(res.extras["forwards/a"], [7] + [6] * (b - 1))


def test_user_callable_is_counted(trained):
    model, x, y = trained

    def two_steps(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            xb = xb.detach().requires_grad_(True)
            grad, = torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb, reduction="sum"), xb)
            xb = (xb + EPS / 2 * grad.sign()).clamp(0, 1)
        return xb.detach()

    res = _eval(model, x, y, {"mine": two_steps})
    ok = _ok(model, x, y).astype(np.int64)
    np.testing.assert_array_equal(res.extras["backwards/mine"], 2 * ok)
    np.testing.assert_array_equal(res.extras["forwards/mine"], 3 * ok)


def test_cascade_charges_each_attack_only_its_survivors(trained):
    model, x, y = trained
    res = _eval(model, x, y, ["fgsm", "pgd3"], cascade=True)
    after_fgsm = (res.adv_pred["fgsm"] == res.labels).astype(np.int64)
    np.testing.assert_array_equal(res.extras["backwards/fgsm"], _ok(model, x, y))
    assert (res.extras["backwards/pgd3"][after_fgsm == 0] == 0).all()
    assert (res.extras["backwards/pgd3"][after_fgsm == 1] >= 1).all() and after_fgsm.sum() > 0


def test_meter_counts_backwards_only_through_the_input_and_unhooks(trained):
    model, x, _ = trained
    with CostMeter(model, torch.arange(4), 4) as meter:
        with torch.no_grad():
            model(x[:4])
        xg = x[:4].clone().requires_grad_(True)
        model(xg).sum().backward()
        with charging(torch.tensor([1, 3])):
            model(x[:2].clone().requires_grad_(True)).sum().backward()
    model(x[:4])  # after exit: not counted
    assert meter.forwards.tolist() == [2, 3, 2, 3] and meter.backwards.tolist() == [1, 2, 1, 2]
    with charging(torch.tensor([0])):  # no meter: nothing to charge, no error
        model(x[:1])
    assert cost_totals(np.array([3, -1, 5]), np.array([2, -1, 4])) == {
        "forwards": 8, "backwards": 6, "examples": 2, "backwards_per_example": 3.0}


def test_cost_records_survive_save_and_load(trained, tmp_path):
    model, x, y = trained
    res = _eval(model, x, y, ["fgsm"])
    res.save(tmp_path / "r.npz")
    back = EvalResults.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.extras["backwards/fgsm"], res.extras["backwards/fgsm"])


def test_evaluation_cost_totals_each_attack(trained):
    from classwise.results import evaluation_cost

    model, x, y = trained
    res = _eval(model, x, y, ["fgsm", "pgd3"])
    n = int(_ok(model, x, y).sum())
    cost = evaluation_cost(res)
    assert cost["fgsm"] == {"forwards": 2 * n, "backwards": n, "examples": len(y), "backwards_per_example": n / len(y)}
    assert cost["pgd3"]["backwards"] == res.extras["backwards/pgd3"].sum() and set(cost) == {"fgsm", "pgd3"}


def test_evaluation_meta_records_the_passes_of_each_attack(trained):
    """meta.json "evaluations" entries carry the totals beside wall and CPU seconds."""
    from classwise.jobs import evaluate as evaluate_job

    model, x, y = trained
    res = _eval(model, x, y, ["fgsm"])
    entry = evaluate_job._timing(res, 1.0, 1.0, torch.device("cpu"), 1, None)[-1]
    assert entry["passes"]["fgsm"]["backwards"] == int(_ok(model, x, y).sum())


def test_uncharged_passes_count_for_no_example(trained):
    from classwise.attacks.cost import uncharged

    model, x, _ = trained
    with CostMeter(model, torch.arange(4), 4) as meter:
        with uncharged(), torch.no_grad():
            model(x[:1])
        with torch.no_grad():
            model(x[:4])
    assert meter.forwards.tolist() == [1, 1, 1, 1]
