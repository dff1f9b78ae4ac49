"""The verdict tests of classwise.analysis.verdicts on synthetic counts where the right answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import chi2_contingency, norm, spearmanr

from classwise.analysis.stats import weak_hurt_more_counts
from classwise.analysis.verdicts import (
    drop_scale_test,
    equivalence_bound,
    extreme_vs_runner_up,
    gap_difference_test,
    heterogeneity_test,
    paired_equivalence,
    permutation_spearman,
    quasi_independence,
    shifted_margin_null,
    symmetry_r,
    symmetry_test,
    target_test,
)

K = 10


# ---- correlation over classes ------------------------------------------------------------------------------------

def test_permutation_spearman_matches_exact_enumeration_for_small_k():
    x, y = np.arange(5.0), np.array([1.0, 0.0, 2.0, 4.0, 3.0])
    rho = spearmanr(x, y).statistic
    perms = [spearmanr(x, y[list(p)]).statistic for p in itertools.permutations(range(5))]
    exact = np.mean(np.abs(perms) >= abs(rho) - 1e-12)  # every one of the 120 pairings
    t = permutation_spearman(x, y, n_perm=9999, seed=0)
    assert t.statistic == pytest.approx(rho)
    assert t.p == pytest.approx(exact, abs=0.01)  # Monte Carlo error of 9,999 draws is about 0.005


def test_permutation_spearman_no_signal_is_not_significant_and_signal_is():
    x = np.arange(K, dtype=float)
    no_signal = np.array([5, 2, 8, 0, 9, 3, 6, 1, 7, 4], dtype=float)
    t = permutation_spearman(x, no_signal, n_perm=1999)
    assert abs(t.statistic) < 0.2 and t.p > 0.5
    t = permutation_spearman(x, x ** 2, alternative="greater", n_perm=1999)
    assert t.statistic == pytest.approx(1.0) and t.p == pytest.approx(1 / 2000)  # no permutation reaches rho 1 here
    assert permutation_spearman(x, -x, alternative="greater", n_perm=1999).p == 1.0


def test_permutation_spearman_size_on_unrelated_classes():
    rng = np.random.default_rng(7)
    rejections = [permutation_spearman(rng.random(K), rng.random(K), n_perm=199, seed=i).p < 0.05 for i in range(200)]
    assert 0.01 <= np.mean(rejections) <= 0.10  # nominal 5%: 200 draws give about +-3 points


# ---- section 3.3: floor and ceiling ---------------------------------------------------------------------------------

def _shifted(levels: np.ndarray, delta: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Expected counts when every class has one logistic margin, shifted: the same log-odds drop ``delta``."""
    mu = np.log(levels / (1 - levels))
    return np.round(n * expit(mu)).astype(np.int64), np.round(n * expit(mu - delta)).astype(np.int64)


def test_pure_floor_and_ceiling_effect_moves_the_absolute_drop_not_the_logit_drop():
    """Classes near 100% lose few points and classes near 0% lose few points, with no class-specific effect."""
    levels = np.linspace(0.7, 0.995, K)  # ceiling: the strong classes have little left to lose
    w, s = _shifted(levels, 1.5, 100_000)
    n = np.full(K, 100_000)
    absolute = permutation_spearman(w / n, (w - s) / n, alternative="less", n_perm=1999)
    assert absolute.statistic == pytest.approx(-1.0) and absolute.p < 0.01  # the absolute drop calls it
    relative = permutation_spearman(w / n, (w - s) / w, alternative="less", n_perm=1999)
    assert relative.statistic < -0.9  # so does the relative loss
    t = drop_scale_test(w, s, n, scale="logit", n_perm=1999)
    # the statistic's drop is one number for every class (the verdict's size under noise: the test below)
    assert np.ptp(np.log((w + 0.5) / (n - w + 0.5)) - np.log((s + 0.5) / (n - s + 0.5))) < 0.01  # one drop
    assert t.effect == pytest.approx(1.5, abs=0.01)
    floor_w, floor_s = _shifted(np.linspace(0.01, 0.4, K), 1.5, 100_000)  # floor: the weak classes have little left
    assert permutation_spearman(floor_w / n, (floor_w - floor_s) / n, alternative="less").statistic > 0.9


def test_logit_drop_test_holds_its_size_under_the_shifted_logistic_null_and_finds_a_real_effect():
    n = np.full(K, 1000)
    sim = shifted_margin_null(np.linspace(0.3, 0.98, K), 0.4, n, family="logistic", reps=100, seed=3)
    rejections = [drop_scale_test(a, b, n, n_perm=199, seed=i).p < 0.05
                  for i, (a, b) in enumerate(zip(sim["weak"], sim["strong"]))]
    assert np.mean(rejections) <= 0.12  # nominal 5%; 100 draws
    levels = np.linspace(0.3, 0.98, K)
    w = np.round(1000 * levels).astype(np.int64)
    mu = np.log(levels / (1 - levels))
    s = np.round(1000 * expit(mu - (2.5 - 0.5 * mu))).astype(np.int64)  # weaker classes lose more log-odds
    t = drop_scale_test(w, s, n, n_perm=1999)
    assert t.statistic == pytest.approx(-1.0) and t.p < 0.01
    assert drop_scale_test(w, s, n, scale="probit", n_perm=1999).p < 0.01


def test_shifted_margin_null_matches_its_rates_and_nests_the_robust_sets():
    n = np.full(K, 400)
    sim = shifted_margin_null(np.linspace(0.2, 0.9, K), 0.35, n, family="normal", reps=300, seed=0)
    assert np.all(sim["strong"] <= sim["weak"])
    assert sim["strong_rate"].mean() == pytest.approx(0.35)
    assert np.allclose(sim["weak"].mean(axis=0) / n, np.linspace(0.2, 0.9, K), atol=0.01)
    z = norm.ppf(np.linspace(0.2, 0.9, K)) - norm.ppf(sim["strong_rate"])
    assert np.ptp(z) < 1e-8  # one probit shift for every class


def test_weak_hurt_more_counts_keeps_equal_losses_tied():
    """Two classes losing 39 of 1,000 have exactly the same drop (no rounding breaks the tie)."""
    weak = np.array([700, 331, 512, 900, 600, 450, 800, 650, 300, 500])
    strong = weak - np.array([39, 39, 50, 10, 60, 70, 20, 45, 80, 55])
    corr = weak_hurt_more_counts(weak, strong, np.full(K, 1000), n_boot=10)
    drop = 100.0 * (weak - strong) / 1000
    assert corr.rho == pytest.approx(spearmanr(100.0 * weak / 1000, drop).statistic)
    assert drop[0] == drop[1]


# ---- figure 2: symmetry against quasi-independence ---------------------------------------------------------------

def test_quasi_independence_fit_matches_margins_and_has_no_pair_affinity():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(6, 6))
    np.fill_diagonal(counts, 0)
    e = quasi_independence(counts)
    assert np.allclose(e.sum(axis=1), counts.sum(axis=1), atol=1e-5)
    assert np.allclose(e.sum(axis=0), counts.sum(axis=0), atol=1e-5)
    assert np.all(np.diag(e) == 0)
    # a_i b_j: every 2 x 2 off-diagonal cross ratio is 1
    assert e[0, 1] * e[2, 3] == pytest.approx(e[0, 3] * e[2, 1])
    assert e[4, 5] * e[1, 0] == pytest.approx(e[4, 0] * e[1, 5])


def test_independent_matrix_is_not_called_symmetric():
    a, b = np.array([5, 1, 3, 8, 2, 6, 1, 4, 7, 2.0]), np.array([1, 6, 2, 3, 9, 1, 4, 2, 3, 5.0])
    table = np.round(40 * np.outer(a, b)).astype(np.int64)  # flips i -> j = a_i b_j exactly, up to rounding
    np.fill_diagonal(table, 0)
    t = symmetry_test(table, reps=999)
    assert t.p > 0.2 and abs(t.effect) < 0.15  # r is what the null gives: no evidence of symmetry


def test_symmetric_matrix_is_called_symmetric():
    rng = np.random.default_rng(1)
    affinity = rng.lognormal(0.0, 1.0, size=(K, K))
    table = np.round(30 * (affinity + affinity.T)).astype(np.int64)
    np.fill_diagonal(table, 0)
    assert symmetry_r(table) == pytest.approx(1.0)
    t = symmetry_test(table, reps=999)
    assert t.p < 0.01 and t.effect > 0


# ---- table 3: equivalence -------------------------------------------------------------------------------------------

def test_paired_tost_hand_values():
    # d = (15 - 5) / 1000 = 0.01, exactly the margin: the upper one-sided z is 0, p = 1/2
    t, p = paired_equivalence(5, 15, 1000, 0.01)
    assert t.statistic == pytest.approx(0.01) and t.p == pytest.approx(0.5)
    assert p == pytest.approx(0.041389, abs=1e-6)  # exact McNemar, binomtest(5, 20)
    # few discordant pairs, no difference: equivalent within 1 point
    t, p = paired_equivalence(10, 10, 10_000, 0.01)
    se = np.sqrt(20 / 10_000) / 100
    assert t.p == pytest.approx(norm.sf(0.01 / se)) and t.significant() and p == 1.0
    # a clear difference: not equivalent, and McNemar finds it
    t, p = paired_equivalence(100, 300, 1000, 0.01)
    assert t.p > 0.99 and p < 1e-20
    with pytest.raises(ValueError):
        paired_equivalence(600, 500, 1000, 0.01)


def test_equivalence_bound_is_never_below_the_paired_test():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(K), 100)
    a = rng.random(1000) < 0.6
    b = np.where(rng.random(1000) < 0.97, a, ~a)  # B agrees with A on 97% of the examples
    count = lambda m: np.bincount(labels[m], minlength=K)  # noqa: E731
    paired, _ = paired_equivalence(int((a & ~b).sum()), int((b & ~a).sum()), 1000, 0.05)
    bound, (p_lo, p_hi) = equivalence_bound(count(a), count(b), np.full(K, 100), 0.05)
    assert bound.statistic == pytest.approx(paired.statistic)  # the difference does not depend on the pairing
    assert bound.p >= paired.p and p_lo <= p_hi
    same, (p_lo, _) = equivalence_bound(count(a), count(a), np.full(K, 100), 0.05)
    assert same.statistic == 0 and p_lo == 1.0


# ---- best / worst, figure 1, figure 7 -------------------------------------------------------------------------------

def test_extreme_vs_runner_up_tie_and_clear_winner():
    i, j, t = extreme_vs_runner_up(np.array([98, 98, 80, 70]), np.full(4, 100), "best")
    assert (i, j) == (0, 1) and t.effect == 0 and t.p == 1.0  # an exact tie is no call
    i, j, t = extreme_vs_runner_up(np.array([60, 62, 65, 20]), np.full(4, 100), "worst")
    assert (i, j) == (3, 0) and t.effect == pytest.approx(40.0) and t.p < 1e-6


def test_heterogeneity_matches_scipy_and_equal_classes_give_no_call():
    count, n = np.array([50, 55, 70, 30]), np.array([100, 100, 100, 100])
    t = heterogeneity_test(count, n)
    ref = chi2_contingency(np.stack([count, n - count], 1), correction=False)
    assert t.statistic == pytest.approx(ref.statistic) and t.p == pytest.approx(ref.pvalue)
    assert t.effect == pytest.approx(40.0)
    same = heterogeneity_test(np.full(4, 50), n)
    assert same.statistic == 0 and same.p == pytest.approx(1.0)
    assert heterogeneity_test(n, n).p == 1.0  # every class at 100%


def test_gap_difference_same_gaps_no_call_larger_gap_called():
    n = np.full(K, 1000)
    narrow, wide = np.linspace(900, 950, K).astype(int), np.linspace(500, 950, K).astype(int)
    assert gap_difference_test(narrow, n, wide, n, reps=2000).p < 0.01
    assert gap_difference_test(wide, n, narrow, n, reps=2000).p > 0.99
    assert gap_difference_test(narrow, n, narrow, n, reps=2000).p > 0.2


# ---- robustness targets ------------------------------------------------------------------------------------------

def test_target_test_is_the_exact_binomial_lower_tail():
    """p = P(Binomial(n, aim) <= count): 78 of 100 against 88% is significantly below, 88 of 100 is not."""
    from scipy.stats import binom

    missed = target_test(78, 100, 88.0)
    assert missed.p == pytest.approx(binom.cdf(78, 100, 0.88), rel=1e-9) and missed.significant()
    assert missed.effect == pytest.approx(-10.0) and missed.statistic == pytest.approx(0.78)
    reached = target_test(88, 100, 88.0)
    assert reached.p > 0.5 and not reached.significant()
    # more evidence at the same observed rate gives a smaller p
    assert target_test(780, 1000, 88.0).p < missed.p
    with pytest.raises(ValueError):
        target_test(0, 0, 88.0)
