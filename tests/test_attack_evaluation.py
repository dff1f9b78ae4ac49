"""Issue 3's evaluation side: sampled attacks, the worst case, the cascade, tables and sanity in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classwise import pipeline
from classwise.analysis import worst_case
from classwise.cli import main
from classwise.config import AttackConfig
from classwise.results import NOT_ATTACKED, EvalResults


def sets(overrides) -> list[str]:
    return [item for o in overrides for item in ("--set", o)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_overrides) -> Path:
    run = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "--out", str(run), "-q", *sets(tiny_overrides)]) == 0
    return run


def test_worst_case_hand_computed():
    labels = np.array([0, 0, 1, 1, 2])
    clean = np.array([0, 0, 1, 2, 2])  # example 3 wrong when clean
    a = np.array([1, 0, 1, 2, 2])  # fools 0
    b = np.array([2, 0, 0, 2, 1])  # fools 0 (again), 2, 4
    assert worst_case(labels, clean, [a, b]).tolist() == [1, 0, 0, 2, 1]
    assert worst_case(labels, clean, []).tolist() == clean.tolist()


def test_sampled_attack_runs_on_its_class_balanced_sample(trained, monkeypatch):
    from classwise.attacks import FGSM

    monkeypatch.setattr(FGSM, "default_per_class", 3)  # the attack class's own sample size
    res = pipeline.evaluate_run(trained, attacks=(AttackConfig("fgsm", 0.3), AttackConfig("pgd3", 0.3, 0.1)),
                                progress=False)
    seen = res.evaluated("fgsm")
    assert seen.sum() == 30 and np.bincount(res.labels[seen], minlength=10).tolist() == [3] * 10
    assert (res.adv_pred["fgsm"][~seen] == NOT_ATTACKED).all() and res.evaluated("pgd3").all()
    summary = json.loads((trained / "summary.json").read_text())
    block = summary["attacks"]["fgsm"]
    assert block["examples"] == 30
    assert block["overall"] == pytest.approx(100 * res.correct("fgsm")[seen].mean())
    assert "worst" not in summary["attacks"]  # only one attack saw every example


def unevaluated_copy(run: Path, tmp_path: Path) -> Path:
    """A copy of the trained run without the results other tests of this module added to it."""
    import shutil

    copy = Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(".classwise.lock")))
    for name in ("results.npz", "meta.json", "summary.json"):
        (copy / name).unlink(missing_ok=True)
    return copy


def test_worst_case_joins_results_and_never_exceeds_any_attack(trained, tmp_path):
    trained = unevaluated_copy(trained, tmp_path)
    res = pipeline.evaluate_run(trained, attacks=(AttackConfig("fgsm", 0.3), AttackConfig("pgd3", 0.3, 0.1),
                                                  AttackConfig("cw-margin5", 0.3, 0.1)), progress=False)
    assert list(res.adv_pred)[-1] == "worst"
    robust = np.all([res.correct(a) for a in ("fgsm", "pgd3", "cw-margin5")], axis=0)
    assert np.array_equal(res.correct("worst"), robust)
    summary = json.loads((trained / "summary.json").read_text())
    worst = summary["attacks"]["worst"]["overall"]
    assert all(worst <= summary["attacks"][a]["overall"] for a in ("fgsm", "pgd3", "cw-margin5"))


def test_cascade_gives_only_the_worst_case(tmp_path, trained):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    (run / "results.npz").unlink()
    code = main(["evaluate", str(run), "--attacks", "fgsm,pgd3", "--cascade", "-q"])
    assert code == 0
    res = EvalResults.load(run / "results.npz")
    assert res.attacks == ["worst"]
    assert res.correct("worst").mean() <= res.correct().mean()


def test_report_has_difference_table_and_sanity_section(trained, tmp_path):
    trained = unevaluated_copy(trained, tmp_path)
    assert main(["evaluate", str(trained), "--attacks", "fgsm,pgd2,pgd20", "--step-size", "0.05", "-q"]) == 0
    md = (trained / "report.md").read_text()
    assert "## Difference against pgd20 (tables 3, 4 and 6)" in md
    assert "## Sanity checks" in md and "more-budget-raises-robustness:" in md and "zero-gradient:" in md
    summary = json.loads((trained / "summary.json").read_text())
    rows = (trained / "tables/difference.csv").read_text().splitlines()
    fgsm = next(r for r in rows if r.startswith("fgsm,")).split(",")
    expected = summary["attacks"]["fgsm"]["per_class"][0] - summary["attacks"]["pgd20"]["per_class"][0]
    assert float(fgsm[2]) == pytest.approx(expected, abs=0.051)
    assert set(summary["sanity"]["checks"]) >= {"robust-above-clean", "zero-gradient"}
