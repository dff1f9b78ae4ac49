"""Contracts of analysis/stats.py against hand-computed and scipy reference values."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr

from classwise.analysis.stats import (
    classwise_interval,
    holm,
    mcnemar_exact,
    paired_classwise,
    rank_call,
    spearman_over_examples,
    spearman_with_ci,
    weak_hurt_more,
    wilson_bounds,
    wilson_interval,
)


def _hand_wilson(k, n, z=1.959963984540054):
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(47, 100), (3, 7), (1, 2), (99, 100), (250, 1000)])
def test_wilson_matches_hand_formula_and_scipy(k, n):
    lo, hi = wilson_interval(k, n)
    ref = binomtest(k, n).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx(_hand_wilson(k, n), abs=1e-12)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_47_of_100_by_hand():
    # z = 1.96: centre (47 + 1.9208) / 103.8415 = 0.47111, half 0.09600
    assert wilson_interval(47, 100) == pytest.approx((0.3751, 0.5671), abs=1e-4)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 100), (100, 100)])
def test_wilson_edges_are_exact_and_match_scipy(k, n):
    lo, hi = wilson_interval(k, n)
    ref = binomtest(k, n).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    if k == 0:
        assert lo == 0.0 and hi > 0.0
    if k == n:
        assert hi == 1.0 and lo < 1.0


def test_wilson_n1_hand_values():
    # k=0, n=1: hi = z^2 / (1 + z^2) = 3.8415 / 4.8415
    assert wilson_interval(0, 1)[1] == pytest.approx(3.841458820694124 / 4.841458820694124)
    assert wilson_interval(1, 1)[0] == pytest.approx(1 / 4.841458820694124)


def test_wilson_empty_and_bad_input():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
    with pytest.raises(ValueError):
        wilson_interval(1, 3, confidence=1.5)


def test_wilson_confidence_widens():
    lo90, hi90 = wilson_interval(30, 60, 0.90)
    lo99, hi99 = wilson_interval(30, 60, 0.99)
    ref = binomtest(30, 60).proportion_ci(confidence_level=0.99, method="wilson")
    assert (lo99, hi99) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert lo99 < lo90 < 0.5 < hi90 < hi99


def test_classwise_interval_counts_and_percent():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    correct = np.array([1, 1, 0, 0, 0, 1, 1, 1], bool)
    ci = classwise_interval(labels, correct, 5)
    np.testing.assert_array_equal(ci.n, [3, 2, 1, 2, 0])
    np.testing.assert_array_equal(ci.count, [2, 0, 1, 2, 0])
    np.testing.assert_allclose(ci.percent[:4], [200 / 3, 0, 100, 100])
    assert np.isnan(ci.percent[4]) and np.all(np.isnan(ci.ci[4]))
    for i, (k, n) in enumerate([(2, 3), (0, 2), (1, 1), (2, 2)]):
        ref = binomtest(k, n).proportion_ci(method="wilson")
        np.testing.assert_allclose(ci.ci[i], [100 * ref.low, 100 * ref.high], atol=1e-10)
    assert np.all(ci.ci[:4, 0] <= ci.percent[:4]) and np.all(ci.percent[:4] <= ci.ci[:4, 1])
    np.testing.assert_allclose(ci.half_width[:4], (ci.ci[:4, 1] - ci.ci[:4, 0]) / 2)


def test_wilson_bounds_vectorised_equals_scalar():
    k, n = np.array([0, 5, 10, 3]), np.array([10, 10, 10, 4])
    lo, hi = wilson_bounds(k, n)
    for i in range(4):
        assert (lo[i], hi[i]) == pytest.approx(wilson_interval(int(k[i]), int(n[i])))


def test_mcnemar_exact_hand_and_scipy():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 * 0.5 ** 5)  # 0.0625
    assert mcnemar_exact(0, 6) == pytest.approx(2 * 0.5 ** 6)
    assert mcnemar_exact(3, 1) == pytest.approx(binomtest(3, 4, 0.5).pvalue) == pytest.approx(0.625)
    assert mcnemar_exact(1, 1) == pytest.approx(1.0)
    assert mcnemar_exact(20, 5) == pytest.approx(binomtest(20, 25, 0.5).pvalue)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_holm_hand_computed():
    adj = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    np.testing.assert_allclose(adj[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adj[3])
    assert holm(np.array([0.9, 0.8])).max() <= 1.0


def test_paired_classwise_counts_discordant_pairs_per_class():
    # class 0: 10 examples, A right on all, B wrong on 8 -> b=8, c=0 -> p = 2/256
    # class 1: 4 examples, A right on 2, B right on a different 2 -> b=2, c=2 -> p = 1
    labels = np.array([0] * 10 + [1] * 4)
    a = np.array([1] * 10 + [1, 1, 0, 0], bool)
    b = np.array([1, 1] + [0] * 8 + [0, 0, 1, 1], bool)
    cmp = paired_classwise(labels, a, b, 3)
    np.testing.assert_array_equal(cmp.n, [10, 4, 0])
    np.testing.assert_array_equal(cmp.only_a[:2], [8, 2])
    np.testing.assert_array_equal(cmp.only_b[:2], [0, 2])
    np.testing.assert_allclose(cmp.diff[:2], [-80.0, 0.0])
    assert cmp.p[0] == pytest.approx(2 / 256) and cmp.p[1] == pytest.approx(1.0)
    assert np.isnan(cmp.p[2]) and not cmp.significant[2]
    assert cmp.p_holm[0] == pytest.approx(2 * 2 / 256)  # two tests
    assert cmp.significant.tolist() == [True, False, False]


def test_paired_classwise_small_drop_not_significant():
    # 3 of 5 lost: p = 2 * (1/2)^3 = 0.25, not significant
    labels = np.zeros(5, int)
    cmp = paired_classwise(labels, np.ones(5, bool), np.array([1, 1, 0, 0, 0], bool), 1)
    assert cmp.p[0] == pytest.approx(0.25) and not cmp.significant[0]


def test_spearman_with_ci_matches_scipy_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    y = x + rng.normal(scale=0.5, size=30)
    res = spearman_with_ci(x, y, n_boot=500, seed=3)
    ref = spearmanr(x, y)
    assert res.rho == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.ci[0] < res.rho < res.ci[1] <= 1.0 and res.k == 30
    assert spearman_with_ci(x, y, n_boot=500, seed=3) == res
    assert spearman_with_ci(x, y, n_boot=500, seed=4).ci != res.ci


def test_spearman_with_ci_drops_nan_and_handles_degenerate():
    x = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    y = np.array([2.0, 4.0, 5.0, 1.0, 9.0])
    res = spearman_with_ci(x, y, n_boot=200)
    assert res.rho == pytest.approx(1.0) and res.k == 4
    const = spearman_with_ci(np.ones(5), np.arange(5.0))
    assert math.isnan(const.rho) and math.isnan(const.ci[0])
    assert const.to_json()["rho"] is None


def test_spearman_over_examples_ci_shrinks_with_more_examples():
    norms = np.arange(10, dtype=float)
    counts = np.arange(1, 20, 2)  # 5%, 15%, ..., 95% of 20
    acc = counts / 20
    small = spearman_over_examples(norms, counts, np.full(10, 20), n_boot=1000, seed=0)
    large = spearman_over_examples(norms, counts * 100, np.full(10, 2000), n_boot=1000, seed=0)
    assert small.rho == pytest.approx(1.0) and large.rho == pytest.approx(1.0)
    assert small.p == pytest.approx(spearmanr(norms, acc).pvalue)
    assert small.ci[0] < large.ci[0] <= 1.0
    assert small.ci[0] < 0.9 and large.ci[0] > 0.9
    assert small.method == "examples"


def test_spearman_over_examples_skips_empty_classes():
    res = spearman_over_examples(np.array([3.0, 1.0, 2.0, 9.0]), np.array([3, 1, 2, 0]), np.array([4, 4, 4, 0]),
                                 n_boot=100)
    assert res.k == 3 and res.rho == pytest.approx(1.0)


def test_weak_hurt_more_sign():
    weak = np.array([20.0, 40.0, 60.0, 80.0, 90.0])
    strong = np.array([5.0, 30.0, 55.0, 78.0, 89.0])  # the weak classes lose most
    res = weak_hurt_more(weak, strong, n_boot=200)
    assert res.rho == pytest.approx(-1.0)
    assert res.p == pytest.approx(spearmanr(weak, weak - strong).pvalue)


def _ci(counts, n):
    return classwise_interval(np.repeat(np.arange(len(counts)), n),
                              np.concatenate([np.arange(n) < c for c in counts]), len(counts))


def test_rank_call_significant_worst():
    ci = _ci([5, 60, 62, 70], 100)  # 5% [2.2, 11.2] vs 60% [50.2, 69.1]
    call = rank_call(ci.percent, ci.ci, "worst")
    assert call.index == 0 and call.significant and call.tied_with == ()


def test_rank_call_tied_worst_lists_overlapping_classes_closest_first():
    ci = _ci([40, 44, 90, 42], 100)
    call = rank_call(ci.percent, ci.ci, "worst")
    assert call.index == 0 and not call.significant
    assert call.tied_with == (3, 1)
    best = rank_call(ci.percent, ci.ci, "best")
    assert best.index == 2 and best.significant


def test_rank_call_same_gap_significance_depends_on_n():
    # 30% vs 50%: tied with 20 examples per class, significant with 500
    few, many = _ci([6, 10], 20), _ci([150, 250], 500)
    assert not rank_call(few.percent, few.ci).significant
    assert rank_call(many.percent, many.ci).significant


def test_rank_call_ignores_empty_classes_and_rejects_all_empty():
    ci = _ci([0, 50], 100)
    percent = np.append(ci.percent, np.nan)
    bounds = np.vstack([ci.ci, [np.nan, np.nan]])
    call = rank_call(percent, bounds)
    assert call.index == 0 and call.significant
    with pytest.raises(ValueError):
        rank_call(np.array([np.nan]), np.array([[np.nan, np.nan]]))
