"""Worst-class statistics (analysis/fairness.py): coverage by simulation, spread, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from classwise.analysis.fairness import class_spread, clopper_pearson, per_class_counts, worst_class
from classwise.analysis.stats import wilson_interval

DRAWS = 2000
SCENARIOS = {  # true per-class rates and examples per class
    "all tied": (np.full(10, 0.5), np.full(10, 30)),
    "one weak near the floor": (np.array([0.05, 0.3, 0.4, 0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9]), np.full(10, 20)),
    "three tied at the bottom, unequal n": (np.array([0.25, 0.25, 0.25, 0.5, 0.6, 0.7, 0.7, 0.8, 0.9, 0.95]),
                                            np.array([10, 50, 100, 20, 30, 40, 50, 60, 70, 80])),
}


def _draws(p: np.ndarray, n: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).binomial(n, p, size=(DRAWS, p.size))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worst_class_interval_covers_the_true_minimum_at_least_95_percent(scenario):
    p, n = SCENARIOS[scenario]
    truth = 100 * p.min()
    calls = [worst_class(k, n) for k in _draws(p, n)]
    covered = np.mean([c.low <= truth <= c.high for c in calls])
    assert covered >= 0.95, covered
    worst = set(np.flatnonzero(p == p.min()).tolist())
    assert np.mean([bool(worst & set(c.candidates)) for c in calls]) >= 0.95


def test_the_naive_interval_of_the_observed_worst_class_undercovers():
    """Why the simultaneous interval: the observed minimum's own 95% interval misses a tied minimum often."""
    p, n = SCENARIOS["all tied"]
    naive = []
    for k in _draws(p, n):
        j = int(np.argmin(k / n))
        lo, hi = wilson_interval(int(k[j]), int(n[j]))
        naive.append(lo <= p.min() <= hi)
    assert np.mean(naive) < 0.90


def test_worst_class_reports_ties_and_a_significant_call():
    tied = worst_class(np.array([10, 10, 90]), np.array([100, 100, 100]))
    assert tied.classes == (0, 1) and tied.percent == 10.0 and not tied.significant
    assert set(tied.candidates) == {0, 1}
    clear = worst_class(np.array([5, 90, 95]), np.array([200, 200, 200]))
    assert clear.classes == (0,) and clear.candidates == (0,) and clear.significant
    assert clear.low < 2.5 < clear.high  # the observed 2.5% lies inside
    assert worst_class(np.array([0, 0]), np.array([0, 0])) is None
    skip_empty = worst_class(np.array([0, 3]), np.array([0, 4]))
    assert skip_empty.classes == (1,) and skip_empty.percent == 75.0


def test_clopper_pearson_matches_known_values_and_edges():
    lo, hi = clopper_pearson(np.array([0, 5, 10, 0]), np.array([10, 10, 10, 0]))
    assert lo[0] == 0.0 and hi[2] == 1.0 and np.isnan(lo[3]) and np.isnan(hi[3])
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 10))  # exact for k = 0
    assert (lo[1], hi[1]) == pytest.approx((0.187086, 0.812914), abs=1e-5)  # 5 of 10


def test_class_spread_std_nsd_and_worst_k_mean_from_counts():
    s = class_spread(np.array([10, 20, 30, 40]), np.array([100, 100, 100, 100]), k=2)
    assert s.std == pytest.approx(np.std([10, 20, 30, 40])) and s.nsd == pytest.approx(s.std / 25)
    assert s.worst_k_mean == 15.0 and s.k == 2
    assert np.isnan(class_spread(np.array([0, 0]), np.array([5, 5])).nsd)
    assert class_spread(np.array([1]), np.array([2]), k=3).k == 1
    assert class_spread(np.array([0]), np.array([0])) is None


def test_per_class_counts_are_integer_counts():
    robust, n = per_class_counts(np.array([0, 0, 1, 2, 2, 2]), np.array([1, 0, 1, 1, 1, 0], bool), 4)
    assert robust.tolist() == [1, 1, 2, 0] and n.tolist() == [2, 1, 3, 0] and robust.dtype == np.int64
