"""The Python API: evaluate() on any nn.Module mapping [0, 1] images to logits."""

from __future__ import annotations

import numpy as np
import torch
import pytest

from classwise.evaluate import evaluate
from classwise.results import EvalResults


@pytest.fixture(scope="module")
def user_model_and_data(mnist_mlp):
    model, x, y = mnist_mlp
    return model, x[:200], y[:200]


def test_evaluate_any_module_returns_per_sample_results(user_model_and_data):
    model, x, y = user_model_and_data
    model.train()
    res = evaluate(model, x, y, ["fgsm", "pgd10"], eps=0.1, device="cpu", progress=False)
    assert isinstance(res, EvalResults)
    assert res.labels.shape == res.clean_pred.shape == res.adv_pred["pgd10"].shape == (200,)
    assert res.class_names == [str(i) for i in range(10)]
    assert model.training  # mode restored
    clean = res.correct()
    assert clean.mean() > 0.7  # the model learned something
    for name in ("fgsm", "pgd10"):
        robust = res.correct(name)
        assert not (robust & ~clean).any()  # robust implies clean-correct
    assert res.correct("pgd10").mean() < clean.mean()  # an undefended model is not robust at eps 0.1


def test_evaluate_is_reproducible_and_eps_zero_is_clean(user_model_and_data):
    model, x, y = user_model_and_data
    a = evaluate(model, x, y, ["pgd5"], eps=0.1, seed=3, progress=False)
    b = evaluate(model, x, y, ["pgd5"], eps=0.1, seed=3, progress=False)
    assert np.array_equal(a.adv_pred["pgd5"], b.adv_pred["pgd5"])
    zero = evaluate(model, x, y, ["pgd5"], eps=0.0, progress=False)
    assert np.array_equal(zero.correct("pgd5"), zero.correct())


def test_evaluate_accepts_float_images_and_keeps_probabilities(user_model_and_data):
    model, x, y = user_model_and_data
    res = evaluate(model, x.float() / 255, y, ["fgsm"], eps=0.05, keep_probs=True, batch_size=64, progress=False)
    assert res.clean_probs.shape == (200, 10) and res.adv_probs["fgsm"].shape == (200, 10)
    assert np.allclose(res.clean_probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(res.clean_probs.argmax(1), res.clean_pred)


def test_results_round_trip_and_merge(tmp_path, user_model_and_data):
    model, x, y = user_model_and_data
    a = evaluate(model, x, y, ["fgsm"], eps=0.05, progress=False)
    a.save(tmp_path / "r.npz")
    b = EvalResults.load(tmp_path / "r.npz")
    assert np.array_equal(a.adv_pred["fgsm"], b.adv_pred["fgsm"]) and a.class_names == b.class_names
    c = evaluate(model, x, y, ["pgd3"], eps=0.05, progress=False)
    merged, ok = c.merged_into(b)
    assert ok and set(merged.adv_pred) == {"fgsm", "pgd3"}
    other = evaluate(model, x[:50], y[:50], ["pgd3"], eps=0.05, progress=False)
    assert other.merged_into(b) == (other, False)


def test_evaluate_needs_eps_for_named_attacks(user_model_and_data):
    model, x, y = user_model_and_data
    with pytest.raises(ValueError, match="eps is required"):
        evaluate(model, x, y, ["pgd5"], progress=False)


class RowLog(torch.nn.Module):
    """Records the rows of every forward pass that needs an input gradient (the attack's passes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.grad_rows = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            self.grad_rows.append(len(x))
        return self.model(x)


def test_evaluate_attacks_only_clean_correct_examples(mnist_mlp):
    """Contract: PGD-K's first gradient pass takes exactly the clean-correct examples, later ones only those
    not fooled yet (compaction; without it every pass takes them all); the zero-gradient sanity check
    then sees every example once."""
    from classwise.attacks import PGD, LinfThreat

    model, x, y = mnist_mlp
    full, log = RowLog(model), RowLog(model)
    res = evaluate(full, x, y, {"pgd4": PGD(full, LinfThreat(0.1, 0.03), steps=4, compact_every=0)},
                   batch_size=len(y), device="cpu", progress=False)
    correct = int(res.correct().sum())
    assert 0 < correct < len(y)  # some examples are misclassified, so the contract has teeth
    assert full.grad_rows == [correct] * 4 + [len(y)]
    compacted = evaluate(log, x, y, {"pgd4": PGD(log, LinfThreat(0.1, 0.03), steps=4)}, batch_size=len(y),
                         device="cpu", progress=False)
    rows = log.grad_rows[:-1]
    assert rows[0] == correct and rows == sorted(rows, reverse=True) and rows[-1] < correct and log.grad_rows[-1] == len(y)
    assert np.array_equal(compacted.adv_pred["pgd4"], res.adv_pred["pgd4"])  # the same outcome for less work


def test_zero_gradient_pass_can_be_left_out(mnist_mlp):
    """Callers that never read the sanity pass (the per-epoch monitor) skip its gradient pass."""
    from classwise.attacks import PGD, LinfThreat

    model, x, y = mnist_mlp
    log = RowLog(model)
    res = evaluate(log, x, y, {"pgd4": PGD(log, LinfThreat(0.1, 0.03), steps=4, compact_every=0)},
                   batch_size=len(y), device="cpu", progress=False, zero_grad=False)
    assert "zero_grad" not in res.extras and log.grad_rows == [int(res.correct().sum())] * 4


def test_records_stay_aligned_when_a_batch_has_no_attacked_example(user_model_and_data):
    """A batch whose examples are all clean-misclassified has no attacked row: its records get the fill value."""
    model, x, y = user_model_and_data
    x, y = x[:24], y[:24].clone()
    with torch.no_grad():
        pred = model.eval()(x.float() / 255).argmax(1)
    y[8:16] = (pred[8:16] + 1) % 10  # batch 2 of 3: every example clean-misclassified
    spec = "pgd3@target=all"
    res = evaluate(model, x, y, [spec], eps=0.1, batch_size=8, progress=False, zero_grad=False)
    hits = res.extras[f"target_hits/{spec}"]
    assert hits.shape == (24, 10)
    assert (hits[8:16] == -1).all()  # not attacked
    # batch 0 draws the same random starts alone: its rows are unchanged, in place
    alone = evaluate(model, x[:8], y[:8], [spec], eps=0.1, batch_size=8, progress=False, zero_grad=False)
    assert np.array_equal(hits[:8], alone.extras[f"target_hits/{spec}"])
    ok = res.correct()
    assert not ok[8:16].any() and ((hits[ok] >= 0).sum(axis=1) == 9).all()  # every target but the true class tried


class ExpectsNormalized(torch.nn.Module):
    """A user's network trained on normalised inputs z = (x - mean) / std; ``by_hand`` normalises [0, 1] x itself."""

    def __init__(self, model: torch.nn.Module, mean: float, std: float, by_hand: bool = False) -> None:
        super().__init__()
        self.model, self.mean, self.std, self.by_hand = model, mean, std, by_hand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, s = torch.tensor(self.mean).view(1, 1, 1, 1), torch.tensor(self.std).view(1, 1, 1, 1)
        z = (x - m) / s if self.by_hand else x
        return self.model(z * s + m)


def test_evaluate_mean_std_normalise_inside_the_attacked_model(user_model_and_data):
    """mean=/std= attack ``net((x - mean) / std)`` on [0, 1] images: the same predictions, bit for bit, as a model
    that normalises by hand, and not those of the network fed raw pixels."""
    model, x, y = user_model_and_data
    net = ExpectsNormalized(model, 0.1307, 0.3081)
    kw = dict(eps=0.1, seed=0, progress=False, device="cpu")
    given = evaluate(net, x, y, ["fgsm", "pgd5"], mean=0.1307, std=(0.3081,), **kw)
    by_hand = evaluate(ExpectsNormalized(model, 0.1307, 0.3081, by_hand=True), x, y, ["fgsm", "pgd5"], **kw)
    raw = evaluate(net, x, y, ["fgsm"], **kw)
    assert np.array_equal(given.clean_pred, by_hand.clean_pred)
    for name in ("fgsm", "pgd5"):
        assert np.array_equal(given.adv_pred[name], by_hand.adv_pred[name]), name
    assert not np.array_equal(given.clean_pred, raw.clean_pred)
    with pytest.raises(ValueError, match="both mean and std"):
        evaluate(net, x, y, ["fgsm"], mean=0.5, **kw)
