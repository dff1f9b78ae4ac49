"""The one attack-spec grammar: parse/format round trip, one rule set in YAML, CLI and evaluate(),
and result keys that parse back into the spec of their attack."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from classwise.attacks import build_attack, create_attack
from classwise.cli import _attack_configs
from classwise.config import AttackConfig, load_config
from classwise.errors import ClasswiseError
from classwise.evaluate import EvalOptions, evaluate
from classwise.identity import merge_results
from classwise.results import EvalResults
from classwise.spec import KEYS, AttackSpec, format_number

pytestmark = pytest.mark.usefixtures("one_thread")

_NAMES = st.sampled_from(["pgd", "pgd20", "fgsm-rs", "cw-margin40", "tpgd:5", "transfer:runs/std", "fmn100", "apgd-ce"])
_FLOATS = st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False)
_NUMBERS = _FLOATS | st.integers(0, 255).map(lambda k: k / 255)
_WORDS = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(lambda w: w not in ("true", "false"))
_OPTION_KEYS = _WORDS.filter(lambda k: k not in (*KEYS, "step_size"))
_VALUES = st.booleans() | st.integers(-5, 1000) | st.floats(-1e3, 1e3, allow_nan=False) | _WORDS


@st.composite
def specs(draw) -> AttackSpec:
    options = draw(st.dictionaries(_OPTION_KEYS, _VALUES, max_size=3))
    return AttackSpec(draw(_NAMES), draw(st.none() | _NUMBERS), draw(st.none() | _NUMBERS),
                      draw(st.none() | st.integers(1, 20)), draw(st.none() | st.sampled_from(["linf", "l2"])),
                      draw(st.none() | st.integers(1, 10**5)), tuple(sorted(options.items())))


@settings(max_examples=300, deadline=None)
@given(specs())
def test_parse_inverts_format(spec):
    text = spec.format()
    assert AttackSpec.parse(text) == spec
    assert AttackSpec.parse(text).format() == text  # one canonical text


@pytest.mark.parametrize("text, spec", [
    ("pgd20@step=0.003", AttackSpec("pgd20", step_size=0.003)),
    ("PGD20 @ Step_Size = 1e-3 @ EPS=8/255", AttackSpec("PGD20", eps=8 / 255, step_size=1e-3)),
    ("pgd5@target=likely@norm=L2@restarts=3", AttackSpec("pgd5", restarts=3, norm="l2", options=(("target", "likely"),))),
    ("pgd5@random_start=false@target=3", AttackSpec("pgd5", options=(("random_start", False), ("target", 3)))),
    ("transfer:runs/std@steps=10", AttackSpec("transfer:runs/std", options=(("steps", 10),))),
    ("pgd5@n=50", AttackSpec("pgd5", examples=50)),
])
def test_every_key_follows_one_rule_set(text, spec):
    assert AttackSpec.parse(text) == spec


def test_numbers_keep_their_exact_value_and_fractions_of_255_read_as_written():
    assert AttackSpec(name="pgd", eps=8 / 255).format() == "pgd@eps=8/255"
    assert [format_number(x) for x in (0.03, 1e-3, 2.0, 0.1 + 0.2)] == ["0.03", "0.001", "2.0", "0.30000000000000004"]


@pytest.mark.parametrize("text, message", [
    ("", "has no attack name"), ("@eps=0.1", "has no attack name"), ("pgd@eps", "must look like key=value"),
    ("pgd@eps=0.1@eps=0.2", "twice"), ("pgd@step=step", "step must be a finite number"),
    ("pgd@eps=-1", "eps must be a finite number >= 0"), ("pgd@restarts=1.5", "restarts must be an integer"),
    ("pgd@norm=l3", "unknown norm 'l3'"), ("pgd@n=0", "n must be an integer >= 1"),
])
def test_malformed_specs_give_one_clear_error(text, message):
    with pytest.raises(ClasswiseError, match=message) as error:
        AttackSpec.parse(text)
    assert "\n" not in str(error.value)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_a_spec_works_alike_in_yaml_cli_and_evaluate(tmp_path):
    """pgd20@step=0.003 as a YAML attack name, in --attacks and in evaluate()'s list: one attack."""
    model, text = _model(), "pgd20@step=0.003@restarts=2"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"eval": {"attacks": [{"name": text, "eps": 0.1}]}}))
    (from_yaml,) = load_config(str(path)).eval.attacks
    (from_cli,) = _attack_configs(AttackConfig("fgsm", 0.1), text, None, None)
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    results = evaluate(model, x, y, [text], eps=0.1, options=EvalOptions(progress=False))
    assert from_yaml == from_cli and from_yaml.name == "pgd20" and from_yaml.step_size == 0.003
    assert build_attack(from_yaml, model).facts() == build_attack(from_cli, model).facts() == results.facts[text]
    assert results.facts[text]["step_size"] == 0.003 and results.facts[text]["restarts"] == 2


def test_a_name_and_its_fields_must_not_both_set_an_option():
    with pytest.raises(ClasswiseError, match="sets loss both in its name and in options"):
        AttackConfig("pgd20@loss=cw", 0.1, options={"loss": "ce"})
    with pytest.raises(ClasswiseError, match="@n= names the examples of a stored result"):
        AttackConfig("pgd20@n=50", 0.1)
    with pytest.raises(ValueError, match="sets restarts; do not also pass restarts="):
        create_attack("pgd20@restarts=2", _model(), 0.1, restarts=3)


def _recorded(cfg: AttackConfig, index: np.ndarray) -> EvalResults:
    """Results of ``cfg`` as an evaluation of a run records them: keyed by spec text, facts with the config."""
    attack = build_attack(cfg, _model())
    text, n = cfg.to_text(), len(index)
    return EvalResults(np.zeros(n, np.int64), np.zeros(n, np.int64), {text: np.zeros(n, np.int64)}, ["a", "b", "c"],
                       extras={"index": index}, facts={text: {"config": dataclasses.asdict(cfg), **attack.facts()}})


@pytest.mark.parametrize("cfg, key, eps, step", [
    (AttackConfig("pgd5", 0.1, 0.05), "pgd5@eps=0.1@step=0.05", 0.3, None),
    (AttackConfig("fgsm-rs", 8 / 255), "fgsm-rs@eps=8/255", 0.3, None),
    # a name of its own: the key leaves out eps and step, which the threat model it was run under gives
    (AttackConfig("pgd5", 0.3, 0.01, norm="l2"), "pgd5@norm=l2", 0.3, 0.01),
    (AttackConfig("pgd5@target=likely", 1.5, norm="l2", restarts=2), "pgd5@restarts=2@target=likely@norm=l2", 1.5, None),
])
def test_a_result_key_fed_back_as_a_spec_recreates_its_attack(cfg, key, eps, step):
    run_eps = AttackConfig("pgd5", 0.3)  # the run's own attack, under the plain name
    index = np.arange(3)
    merged, _ = merge_results(None, {}, _recorded(dataclasses.replace(run_eps, name=cfg.name), index), {
        "checkpoint": "last", "sha256": "x"})
    merged, _ = merge_results(merged, {"checkpoint": "last", "sha256": "x"}, _recorded(cfg, index),
                              {"checkpoint": "last", "sha256": "x"})
    assert list(merged.adv_pred)[-1] == key
    facts = {k: v for k, v in merged.facts[key].items() if k != "config"}
    assert create_attack(key, _model(), eps, step).facts() == facts  # a key's own eps and step override these
    assert build_attack(AttackConfig.from_text(key, eps, step), _model()).facts() == facts


def test_a_plain_result_key_is_the_spec_without_the_run_threat_model():
    index = np.arange(3)
    cfg = AttackConfig("pgd5@target=3@restarts=2", 0.3, norm="linf")
    merged, _ = merge_results(None, {}, _recorded(cfg, index), {"checkpoint": "last", "sha256": "x"})
    assert list(merged.adv_pred) == ["pgd5@restarts=2@target=3"]
    assert create_attack("pgd5@restarts=2@target=3", _model(), 0.3).facts() == {
        k: v for k, v in merged.facts["pgd5@restarts=2@target=3"].items() if k != "config"}


def test_per_example_records_follow_their_attack_to_its_key_when_the_spec_holds_a_fraction():
    """Records "<kind>/<spec>" move to "<kind>/<key>": a spec written with eps=8/255 holds a "/" of its own."""
    index = np.arange(3)
    cfg = AttackConfig("fgsm", 8 / 255, norm="linf")
    res = _recorded(cfg, index)
    spec = cfg.to_text()
    assert "/" in spec
    res.extras |= {f"forwards/{spec}": np.full(3, 2, np.int64), f"backwards/{spec}": np.ones(3, np.int64)}
    merged, _ = merge_results(None, {}, res, {"checkpoint": "last", "sha256": "x"})
    (key,) = merged.adv_pred
    assert merged.cost(key) == {"forwards": 6, "backwards": 3, "examples": 3, "backwards_per_example": 1.0}
    assert not any(k.endswith(f"/{key}") and k.count("/") > 1 for k in merged.extras)


def test_the_training_attack_keeps_the_settings_of_its_spec():
    from classwise.train.objectives import training_attack

    facts = training_attack(AttackConfig("pgd3@loss=cw@step=0.1", 0.3), _model(), 0.15).facts()
    assert (facts["loss"], facts["steps"], facts["keep_best"], facts["eps"]) == ("cw", 3, False, 0.15)
    assert facts["step_size"] == pytest.approx(0.05)  # the step keeps its ratio to eps during a warm-up
