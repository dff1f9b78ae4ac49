"""Contracts of the class-wise analysis functions, on small hand-computed arrays."""

import json
import math

import numpy as np
import pytest

from classwise.analysis import (
    best_worst,
    classwise_accuracy,
    confusion_counts,
    fold_superclasses,
    headline_attack,
    largest_gap,
    minmax,
    norm_robustness_correlation,
    overall_accuracy,
    robustness_confusion,
    row_percent,
    sanity_warnings,
    summarize,
    weight_norms,
)
from classwise.results import EvalResults

LABELS = np.array([0, 0, 1, 1, 2])
PRED = np.array([0, 1, 1, 1, 0])  # class 0: 1/2, class 1: 2/2, class 2: 0/1


def test_classwise_accuracy_hand_computed():
    np.testing.assert_allclose(classwise_accuracy(LABELS, PRED, 3), [50.0, 100.0, 0.0])


def test_classwise_accuracy_nan_for_empty_class():
    acc = classwise_accuracy(LABELS, PRED, 4)
    np.testing.assert_allclose(acc[:3], [50.0, 100.0, 0.0])
    assert np.isnan(acc[3])


def test_overall_accuracy():
    assert overall_accuracy(LABELS, PRED) == pytest.approx(60.0)
    assert math.isnan(overall_accuracy(np.array([], int), np.array([], int)))


def test_confusion_counts_rows_true_cols_pred():
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    counts = confusion_counts(LABELS, PRED, 3)
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype.kind == "i"


def test_robustness_confusion_percent_of_row():
    m = robustness_confusion(LABELS, PRED, 4)
    np.testing.assert_allclose(m[:3], [[50, 50, 0, 0], [0, 100, 0, 0], [100, 0, 0, 0]])
    assert np.all(np.isnan(m[3]))  # class with no examples
    np.testing.assert_allclose(np.diag(m)[:3], classwise_accuracy(LABELS, PRED, 3))


def test_out_of_range_and_shape_mismatch_raise():
    with pytest.raises(ValueError):
        classwise_accuracy(LABELS, np.array([0, 1, 1, 1, 3]), 3)
    with pytest.raises(ValueError):
        confusion_counts(LABELS, PRED[:4], 3)
    with pytest.raises(ValueError):
        overall_accuracy(LABELS, PRED[:4])


def test_fold_superclasses_hand_computed():
    counts = np.arange(16).reshape(4, 4)
    folded = fold_superclasses(counts, {"b": [2, 3], "a": [0, 1]})
    # b,b = 10+11+14+15; b,a = 8+9+12+13; a,b = 2+3+6+7; a,a = 0+1+4+5
    np.testing.assert_array_equal(folded, [[50, 42], [18, 10]])
    np.testing.assert_allclose(row_percent(folded), [[50 / 92 * 100, 42 / 92 * 100], [18 / 28 * 100, 10 / 28 * 100]])


def test_fold_superclasses_requires_partition():
    counts = np.ones((3, 3), int)
    with pytest.raises(ValueError):
        fold_superclasses(counts, {"a": [0], "b": [1]})  # class 2 missing
    with pytest.raises(ValueError):
        fold_superclasses(counts, {"a": [0, 1], "b": [1, 2]})  # overlap


def test_row_percent_empty_row_is_nan():
    m = row_percent(np.array([[1, 3], [0, 0]]))
    np.testing.assert_allclose(m[0], [25, 75])
    assert np.all(np.isnan(m[1]))


def test_best_worst_and_gap():
    assert best_worst(np.array([50.0, 100.0, 0.0])) == (1, 2)
    assert best_worst(np.array([np.nan, 3.0, 1.0])) == (1, 2)
    assert best_worst(np.array([5.0, 5.0, 1.0, 1.0])) == (0, 2)  # first on ties
    assert largest_gap(np.array([50.0, np.nan, 20.0, 90.0])) == pytest.approx(70.0)
    with pytest.raises(ValueError):
        best_worst(np.array([np.nan, np.nan]))


def test_minmax():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(minmax(np.array([3.0, 3.0])), [0.0, 0.0])
    out = minmax(np.array([1.0, np.nan, 3.0]))
    assert out[0] == 0.0 and out[2] == 1.0 and np.isnan(out[1])


def test_weight_norms_rows():
    np.testing.assert_allclose(weight_norms(np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])), [5.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        weight_norms(np.ones(3))


def test_spearman_monotone_and_nan():
    rho, p = norm_robustness_correlation(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 25.0, 26.0, 90.0]))
    assert rho == pytest.approx(1.0) and p < 0.05
    rho, _ = norm_robustness_correlation(np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.0, 1.0]))
    assert rho == pytest.approx(-1.0)
    rho, _ = norm_robustness_correlation(np.array([1.0, 2.0, 5.0, 4.0]), np.array([1.0, 2.0, np.nan, 4.0]))
    assert rho == pytest.approx(1.0)  # the NaN class is dropped
    assert all(math.isnan(v) for v in norm_robustness_correlation(np.ones(4), np.arange(4.0)))


def _results():
    return EvalResults(
        labels=LABELS, clean_pred=np.array([0, 0, 1, 1, 0]),
        adv_pred={"fgsm": np.array([0, 1, 1, 1, 0]), "pgd20": np.array([1, 1, 1, 2, 0])},
        class_names=["a", "b", "c", "d"],
    )


def test_summarize_numbers_and_json():
    s = summarize(_results(), dataset="toy")
    assert s["dataset"] == "toy" and s["num_examples"] == 5 and s["class_names"] == ["a", "b", "c", "d"]
    assert s["clean"]["overall"] == pytest.approx(80.0)
    assert s["clean"]["per_class"][:3] == pytest.approx([100.0, 100.0, 0.0])
    pgd = s["attacks"]["pgd20"]
    assert pgd["overall"] == pytest.approx(20.0)
    assert pgd["per_class"][:3] == pytest.approx([0.0, 50.0, 0.0]) and pgd["per_class"][3] is None
    assert (pgd["best_class"], pgd["worst_class"], pgd["gap"]) == (1, 0, pytest.approx(50.0))
    assert list(s["attacks"]) == ["fgsm", "pgd20"]
    json.dumps(s, allow_nan=False)  # plain floats, NaN -> None


def test_headline_attack():
    assert headline_attack(["fgsm", "pgd10", "PGD-50", "pgd20", "cw"]) == "PGD-50"
    assert headline_attack(["fgsm", "cw"]) == "fgsm"
    assert headline_attack([]) is None


def test_sanity_warnings():
    s = summarize(_results())
    warns = sanity_warnings(s)
    assert any("'d'" in w and "no test examples" in w for w in warns)
    assert not any("above clean" in w for w in warns)
    bad = _results()
    bad.adv_pred["fgsm"] = np.array([0, 0, 1, 1, 2])  # class c robust but never clean-correct
    assert any(w.startswith("fgsm: robustness above clean") and "c" in w for w in sanity_warnings(summarize(bad)))
