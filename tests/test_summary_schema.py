"""Contracts of the typed summary: summary.json unchanged but for schema_version, exact round trip, clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from summary_cases import rich_kwargs, rich_results
from torch import nn

from classwise.analysis import build_summary, summarize
from classwise.analysis.schema import (
    SCHEMA_VERSION,
    AttackCost,
    AccuracyBlock,
    Summary,
    load_summary,
)
from classwise.analysis.fairness import worst_class
from classwise.errors import ClasswiseError
from classwise.evaluate import evaluate

GOLDEN = Path(__file__).parent / "data/summary_golden.json"  # summarize() of rich_results() before the typed summary


def _same(a, b, at="summary"):
    """Equal JSON values: same keys and order, same types, floats to 1e-9 relative."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, at
    if isinstance(a, dict):
        assert list(a) == list(b), at
        for k in a:
            _same(a[k], b[k], f"{at}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), at
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{at}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9), at
    else:
        assert a == b, at


SCHEMA_2_KEYS = ("worst_class_interval", "spread")  # added to every block with examples by schema 2


def test_summary_json_is_the_old_format_plus_schema_version_and_worst_class_fields():
    new = summarize(rich_results(), **rich_kwargs())
    assert new.pop("schema_version") == SCHEMA_VERSION == 3
    json.dumps(new, allow_nan=False)
    for block in [new["clean"], *new["attacks"].values()]:
        worst, spread = (block.pop(key) for key in SCHEMA_2_KEYS)
        expected_worst = worst_class(np.array(block["count"]), np.array(block["n"]))
        assert worst["percent"] == expected_worst.percent and worst["low"] == expected_worst.low
        assert worst["classes"] == list(expected_worst.classes) and worst["percent"] <= min(
            p for p in block["per_class"] if p is not None) + 1e-9
        assert spread["k"] == 3 and spread["worst_k_mean"] >= worst["percent"]
    old = json.loads(GOLDEN.read_text())
    # since the golden: claims compare attacks of one threat model only, so the L2 fmn30 (eps 0.5) is no
    # longer paired with L-inf pgd20 (eps 0.031); everything else is unchanged
    del old["claims"]["paired"]["attacks"]["fmn30@norm=l2"]
    old["claims"]["weak_hurt_more"] = [c for c in old["claims"]["weak_hurt_more"] if "fmn30@norm=l2" not in c.values()]
    _same(new, old)


def test_attack_blocks_state_the_cost_their_records_hold_and_a_worst_case_the_sum():
    """Schema 3: "cost" from the per-example pass records; the worst case spent the sum of its attacks."""
    res = rich_results()
    res.extras |= {f"{kind}/{a}": np.where(res.labels % 2 == 0, n, 0).astype(np.int64)
                   for a, n in (("fgsm", 2), ("pgd20", 21)) for kind in ("forwards", "backwards")}
    res.extras["forwards/pgd20"][:5] = -1  # five examples (class 0) pgd20 did not see
    res.extras["backwards/pgd20"][:5] = -1
    res.adv_pred["worst"] = res.adv_pred["pgd20"]
    res.facts["worst"] = {"family": "worst", "over": ["fgsm", "pgd20"]}
    s = build_summary(res)
    fgsm, pgd = s.attacks["fgsm"].cost, s.attacks["pgd20"].cost
    evens = int((res.labels % 2 == 0).sum())  # 36 of 60
    assert (fgsm.forwards, fgsm.backwards, fgsm.examples) == (2 * evens, 2 * evens, 60)
    assert (pgd.backwards, pgd.examples) == (21 * (evens - 5), 55) and pgd.backwards_per_example == pytest.approx(
        21 * (evens - 5) / 55)
    worst = s.attacks["worst"].cost
    assert worst.backwards == fgsm.backwards + pgd.backwards and worst.examples == 60
    assert s.attacks["fmn30@norm=l2"].cost is None and "cost" not in summarize(res)["attacks"]["fmn30@norm=l2"]
    assert Summary.from_dict(s.to_dict()) == s
    assert AttackCost(2_100_000, 2_140_000, 10_000, 214.0).text == "2.14 M gradient passes, 214 per example"
    assert AttackCost(92, 46, 100, 0.46).text.endswith(", 0.46 per example")  # FGSM where half is misclassified


def test_a_version_1_summary_still_loads_without_the_worst_class_fields():
    old = json.loads(GOLDEN.read_text()) | {"schema_version": 1}
    s = Summary.from_dict(old)
    assert s.attacks["pgd20"].worst_class_interval is None and s.attacks["pgd20"].spread is None


def test_typed_summary_reads_by_attribute():
    s = build_summary(rich_results(), **rich_kwargs())
    assert s.headline == "pgd20" and s.class_names == ("plane", "car", "bird", "cat", "ship")
    pgd = s.attacks["pgd20"]
    assert isinstance(pgd, AccuracyBlock) and pgd.examples == 60 and pgd.norm == "linf" and pgd.eps == 0.031
    assert s.clean.norm is None and "norm" not in s.to_dict()["clean"]
    assert s.claims.weakest[0].index == pgd.worst_class and s.claims.weight_norm.attack == "pgd20"
    assert s.curves["fmn30@norm=l2"].median.per_class[0].low is not None
    assert s.norms.attacks == {"linf": "pgd20", "l2": "fmn30@norm=l2"} and s.homing.removed == (3,)
    assert s.sanity.flags[0].scope == "cat" and s.dataset == "toy"


def _tiny_evaluation():
    torch.manual_seed(0)
    x, y = torch.rand(24, 1, 4, 4), torch.arange(24) % 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    return evaluate(model, x, y, ["fgsm", "pgd5", "fmn10@norm=l2"], eps=0.1, device="cpu", progress=False), model


def test_round_trip_of_a_real_evaluation(tmp_path):
    res, model = _tiny_evaluation()
    s = build_summary(res, head_weight=model[1].weight.detach().numpy(), superclasses={"a": [0, 1], "b": [2]},
                      dataset="toy", note="kept")
    assert Summary.from_dict(s.to_dict()) == s
    assert s.extra == {"note": "kept"} and s.to_dict()["note"] == "kept"
    assert Summary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"partial": "stopped at epoch 2"} | s.to_dict()))
    loaded = load_summary(path)
    assert loaded.partial == "stopped at epoch 2" and next(iter(loaded.to_dict())) == "partial"


def _broken(change) -> dict:
    data = summarize(rich_results(), **rich_kwargs())
    change(data)
    return data


@pytest.mark.parametrize("change, field", [
    (lambda d: d["attacks"]["pgd20"].__setitem__("per_class", "x"), "'attacks.pgd20.per_class'"),
    (lambda d: d["clean"]["ci95"][2].pop(), "'clean.ci95[2]'"),
    (lambda d: d.pop("class_names"), "'class_names': missing"),
    (lambda d: d["claims"]["weakest"][0].__setitem__("class", "cat"), "'claims.weakest[0].class'"),
    (lambda d: d.__setitem__("num_examples", True), "'num_examples'"),
])
def test_malformed_summary_names_the_file_and_field(tmp_path, change, field):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(ClasswiseError) as err:
        load_summary(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_older_file_without_version_loads_and_newer_is_refused(tmp_path):
    path = tmp_path / "summary.json"
    old = json.loads(GOLDEN.read_text())
    path.write_text(json.dumps(old))
    assert load_summary(path).schema_version == 1
    path.write_text(json.dumps(old | {"schema_version": 99}))
    with pytest.raises(ClasswiseError, match="schema_version 99 is newer"):
        load_summary(path)
    path.write_text("[1, 2]")
    with pytest.raises(ClasswiseError, match="expected an object"):
        load_summary(path)


def test_summary_is_frozen():
    s = build_summary(rich_results())
    with pytest.raises(AttributeError):
        s.headline = "fgsm"  # type: ignore[misc]
    assert np.isclose(s.block(None).overall, s.clean.overall) and s.rows()[0] == ("clean", s.clean)
