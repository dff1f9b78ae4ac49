"""evaluate(..., cascade=True): the cascade (each attack only on examples still robust)."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from classwise.attacks import FGSM, PGD, LinfThreat
from classwise.evaluate import WORST, evaluate


@pytest.fixture(scope="module")
def model_and_data(mnist_mlp):
    return mnist_mlp


def _suite(model: nn.Module) -> dict:
    return {"fgsm": FGSM(model, LinfThreat(0.1, 0.1)), "pgd5": PGD(model, LinfThreat(0.1, 0.03), steps=5)}


def test_cascade_is_cumulative_and_matches_the_worst_case(model_and_data):
    model, x, y = model_and_data
    kw = dict(batch_size=128, device="cpu", progress=False)
    cascade = evaluate(model, x, y, _suite(model), cascade=True, **kw)
    alone = evaluate(model, x, y, _suite(model), **kw)
    assert cascade.attacks == ["fgsm", "pgd5", WORST]
    clean, fgsm, pgd, worst = (cascade.correct(a).mean() for a in (None, "fgsm", "pgd5", WORST))
    assert clean >= fgsm >= pgd == worst
    np.testing.assert_array_equal(cascade.adv_pred["fgsm"], alone.adv_pred["fgsm"])  # first attack: same run
    fooled_by_fgsm = ~cascade.correct("fgsm")
    np.testing.assert_array_equal(cascade.adv_pred["pgd5"][fooled_by_fgsm], cascade.adv_pred["fgsm"][fooled_by_fgsm])
    assert (cascade.correct(WORST) <= alone.correct("fgsm")).all()
    assert 0 < worst < clean  # a meaningful check: some examples fooled, some robust


def test_cascade_keeps_probabilities_and_rejects_the_reserved_name(model_and_data):
    model, x, y = model_and_data
    res = evaluate(model, x[:50], y[:50], ("fgsm",), eps=0.1, cascade=True, device="cpu", progress=False,
                              keep_probs=True)
    assert set(res.adv_probs) == {"fgsm", WORST} and res.adv_probs[WORST].shape == (50, 10)
    with pytest.raises(ValueError, match="reserved"):
        evaluate(model, x[:10], y[:10], {WORST: FGSM(model, LinfThreat(0.1, 0.1))}, cascade=True,
                            device="cpu", progress=False)
