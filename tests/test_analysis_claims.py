"""The tested claims of summary.json: intervals, tied calls, paired drops, weakest classes explained."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr

from classwise.analysis import summarize
from classwise.analysis.claims import weakest_explained
from classwise.results import EvalResults


def _results(robust: dict[str, list[int]], n: int, names=None, flip_to=None) -> EvalResults:
    """n clean-correct examples per class; under attack a the first robust[a][k] of class k survive.

    The others are flipped to flip_to[k] (default k + 1).
    """
    k = len(next(iter(robust.values())))
    labels = np.repeat(np.arange(k), n)
    flip_to = flip_to or [(c + 1) % k for c in range(k)]
    adv = {}
    for attack, counts in robust.items():
        pred = np.array([flip_to[c] for c in labels])
        for c, r in enumerate(counts):
            pred[np.flatnonzero(labels == c)[:r]] = c
        adv[attack] = pred
    return EvalResults(labels, labels.copy(), adv, names or [f"c{i}" for i in range(k)])


def test_summary_has_n_count_and_wilson_ci_per_class_and_overall():
    s = summarize(_results({"pgd20": [47, 0, 100]}, 100))
    b = s["attacks"]["pgd20"]
    assert b["n"] == [100, 100, 100] and b["count"] == [47, 0, 100]
    ref = binomtest(47, 100).proportion_ci(method="wilson")
    assert b["ci95"][0] == pytest.approx([100 * ref.low, 100 * ref.high])
    assert b["ci95"][1][0] == 0.0 and b["ci95"][2][1] == 100.0
    ref_all = binomtest(147, 300).proportion_ci(method="wilson")
    assert b["overall_ci95"] == pytest.approx([100 * ref_all.low, 100 * ref_all.high])
    json.dumps(s, allow_nan=False)


def test_worst_class_tied_when_intervals_overlap():
    s = summarize(_results({"pgd20": [40, 43, 90, 80]}, 100))["attacks"]["pgd20"]
    assert s["worst_class"] == 0 and s["worst_call"] == {"class": 0, "significant": False, "tied_with": [1]}
    assert s["best_call"] == {"class": 2, "significant": False, "tied_with": [3]}  # 90% [82.6, 94.5] vs 80% [71.1, 86.7]


def test_all_equal_classes_have_no_best_or_worst_and_the_report_says_tied():
    from classwise.analysis.schema import Summary
    from classwise.report.build import _headline_lines
    from classwise.report.glance import headline_card

    s = summarize(_results({"pgd20": [0, 0, 0]}, 10))
    block = s["attacks"]["pgd20"]
    assert block["gap"] == 0.0 and block["best_class"] is None and block["worst_class"] is None
    assert block["best_call"] is None and block["worst_call"] is None and block["worst_class_interval"] is not None
    typed = Summary.from_dict(s)
    lines = _headline_lines(typed)
    assert "most and least robust class: none: all 3 classes tied at 0.0%" in lines
    assert not any(line.startswith(("most robust class", "least robust class")) for line in lines)
    card = headline_card(typed, [], 0).items
    assert "weakest class: none: all 3 classes tied at 0.0%" in card
    assert "strongest class: none: all 3 classes tied at 0.0%" in card


def test_worst_class_significant_when_disjoint():
    s = summarize(_results({"pgd20": [10, 43, 90, 80]}, 100))["attacks"]["pgd20"]
    assert s["worst_call"] == {"class": 0, "significant": True, "tied_with": []}


def test_paired_drops_marked_by_exact_mcnemar():
    # class 0 loses 30 of 50 under pgd20 vs fgsm (significant), class 1 loses 2 (not)
    s = summarize(_results({"fgsm": [50, 50, 50], "pgd20": [20, 48, 50]}, 50))
    paired = s["claims"]["paired"]
    assert paired["reference"] == "pgd20"
    f = paired["attacks"]["fgsm"]
    assert f["diff"] == pytest.approx([60.0, 4.0, 0.0])  # fgsm - pgd20, percentage points
    assert f["p"][0] == pytest.approx(binomtest(30, 30).pvalue) and f["p"][1] == pytest.approx(0.5)
    assert f["p"][2] == 1.0
    assert f["significant"] == [True, False, False]
    assert f["overall"]["p"] == pytest.approx(binomtest(32, 32).pvalue)


def test_claims_never_compare_attacks_of_different_threat_models():
    """An L2 attack at eps 0.5 is no "stronger attack" than L-inf PGD-20: neither McNemar nor rho pairs them."""
    res = _results({"fgsm": [50, 50, 50], "pgd20": [20, 48, 50], "pgd20@norm=l2": [0, 0, 0],
                    "pgd40": [20, 47, 50]}, 50)
    linf = {"norm": "linf", "eps": 8 / 255}
    res.facts = {"fgsm": {"family": "fgsm"} | linf, "pgd20": {"family": "pgd", "steps": 20} | linf,
                 "pgd20@norm=l2": {"family": "pgd", "steps": 20, "norm": "l2", "eps": 0.5},
                 "pgd40": {"family": "pgd", "steps": 40, "norm": "linf", "eps": 16 / 255}}
    claims = summarize(res)["claims"]
    assert claims["paired"]["reference"] == "pgd20" and list(claims["paired"]["attacks"]) == ["fgsm"]
    assert [(c["weaker"], c["stronger"]) for c in claims["weak_hurt_more"]] == [("fgsm", "pgd20")]


def test_weak_hurt_more_rank_correlation():
    s = summarize(_results({"fgsm": [30, 50, 70, 90, 95], "pgd20": [5, 30, 60, 86, 94]}, 100))
    (claim,) = s["claims"]["weak_hurt_more"]
    assert claim["weaker"] == "fgsm" and claim["stronger"] == "pgd20"
    w, st = np.array([30, 50, 70, 90, 95.0]), np.array([5, 30, 60, 86, 94.0])
    ref = spearmanr(w, w - st)
    assert claim["rho"] == pytest.approx(ref.statistic) == pytest.approx(-1.0)
    assert claim["p"] == pytest.approx(ref.pvalue)
    assert claim["ci"][0] - 1e-9 <= claim["rho"] <= claim["ci"][1] + 1e-9


def test_weight_norm_claim_against_robustness_and_clean():
    res = _results({"pgd20": [10, 30, 50, 70, 90]}, 100)
    clean = res.clean_pred.copy()
    clean[np.flatnonzero(res.labels == 4)[:40]] = 0  # clean accuracy: 100, 100, 100, 100, 60
    res.clean_pred = clean
    weight = np.diag([1.0, 2.0, 3.0, 4.0, 5.0])
    claim = summarize(res, head_weight=weight)["claims"]["weight_norm"]
    assert claim["robust"]["rho"] == pytest.approx(1.0) and claim["robust"]["bootstrap"] == "examples"
    assert claim["clean"]["rho"] == pytest.approx(spearmanr([1, 2, 3, 4, 5], [100, 100, 100, 100, 60]).statistic)
    assert claim["robust"]["ci"][0] > 0.5
    with pytest.raises(ValueError, match="head_weight"):
        summarize(res, head_weight=weight[:3])


def test_weakest_explained_confounds_superclass_share_and_gap():
    # class 0 (cat): 10 of 100 robust; 60 flipped to 1 (dog), 30 to 2 (car)
    labels = np.repeat(np.arange(3), 100)
    adv = labels.copy()
    cat = np.flatnonzero(labels == 0)
    adv[cat[10:70]], adv[cat[70:]] = 1, 2
    adv[np.flatnonzero(labels == 1)[:20]] = 0
    clean = labels.copy()
    clean[cat[:5]] = 2  # cat clean accuracy 95; those 5 stay wrong under attack
    adv[cat[:5]] = 2
    res = EvalResults(labels, clean, {"pgd20": adv}, ["cat", "dog", "car"])
    (cat_row, dog_row, car_row) = weakest_explained(res, "pgd20", {"animal": [0, 1], "vehicle": [2]})
    assert cat_row["class"] == 0 and cat_row["robust"] == pytest.approx(5.0) and cat_row["clean"] == 95.0
    assert cat_row["gap_to_clean"] == pytest.approx(90.0)
    assert [c["class"] for c in cat_row["confounds"]] == [1, 2]
    assert cat_row["confounds"][0]["share"] == pytest.approx(60 / 95)
    assert cat_row["within_superclass"] == pytest.approx(60 / 95)
    assert dog_row["class"] == 1 and dog_row["within_superclass"] == 1.0
    assert car_row["confounds"] == [] and car_row["within_superclass"] is None
    assert weakest_explained(res, "pgd20")[0]["within_superclass"] is None
