"""Evaluations resume: a killed evaluation, called again, continues and ends with an uninterrupted run's results."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from classwise import evaluate as evaluate_module
from classwise.evaluate import evaluate

ATTACKS = ["fgsm", "pgd5", "strong"]


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    x, y = torch.rand(40, 1, 4, 4), torch.arange(40) % 4
    return model, x, y


def _same(a, b) -> None:
    assert np.array_equal(a.clean_pred, b.clean_pred) and a.adv_pred.keys() == b.adv_pred.keys()
    for key in a.adv_pred:
        assert np.array_equal(a.adv_pred[key], b.adv_pred[key]), key
    assert a.extras.keys() == b.extras.keys()
    for key in a.extras:
        assert np.array_equal(a.extras[key], b.extras[key]), key


@pytest.mark.parametrize("cascade", [False, True])
def test_an_interrupted_evaluation_continues_and_equals_an_uninterrupted_one(tmp_path, monkeypatch, cascade):
    model, x, y = _problem()
    kw = dict(eps=0.2, device="cpu", progress=False, batch_size=8, cascade=cascade)
    straight = evaluate(model, x, y, ATTACKS, **kw)

    real, calls = evaluate_module._cascade_batch if cascade else evaluate_module._attack_batch, []

    def dies_on_the_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) between batches
        return real(*args, **kwargs)

    name = "_cascade_batch" if cascade else "_attack_batch"
    monkeypatch.setattr(evaluate_module, name, dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, x, y, ATTACKS, state_dir=tmp_path, state_every_s=0, **kw)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # three batches kept
    monkeypatch.setattr(evaluate_module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    calls.clear()
    resumed = evaluate(model, x, y, ATTACKS, state_dir=tmp_path, state_every_s=0, **kw)
    assert len(calls) == 2  # only the two batches not finished before
    _same(resumed, straight)
    assert list(tmp_path.glob("*.safetensors")) == []  # removed once the evaluation ended


def test_a_state_of_other_weights_or_images_is_not_used(tmp_path):
    model, x, y = _problem()
    kw = dict(eps=0.2, device="cpu", progress=False, batch_size=8, state_dir=tmp_path, state_every_s=0)
    from classwise.evalstate import EvalState, fingerprint

    facts = {"fgsm": {"family": "fgsm"}}
    settings = {"pass": "_attack_batch"}
    base = fingerprint(model, x, y, facts, settings)
    other_x = x.clone()
    other_x[0, 0, 0, 0] += 0.01
    assert fingerprint(model, other_x, y, facts, settings) != base
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed[1].weight[0, 0] += 1e-3
    assert fingerprint(changed, x, y, facts, settings) != base
    assert fingerprint(model, x, y, facts, settings | {"seed": 1}) != base
    state = EvalState(tmp_path, base, 0)
    state.save([(0, {"fgsm": torch.zeros(8, 4)})])
    assert len(EvalState(tmp_path, base, 0).load()) == 1 and EvalState(tmp_path, "f" * 64, 0).load() == []
    (tmp_path / state.path.name).write_bytes(b"torn")
    assert EvalState(tmp_path, base, 0).load() == []  # a torn file: attack everything again
    res = evaluate(model, x, y, ["fgsm"], eps=0.2, **{k: v for k, v in kw.items() if k != "eps"})
    assert len(res.labels) == 40
