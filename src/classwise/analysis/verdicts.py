"""Hypothesis tests behind class-wise verdicts: each claim against a stated null, from integer counts.

The paper's class-wise claims (sections 3.1-3.3, figures 2 and 4, tables 2 and 3)
become tests here, each with its null, statistic, p-value and effect size
(:class:`HypothesisTest`):

- :func:`permutation_spearman`: a correlation over K classes (figure 4's weight
  norm vs robustness) against "no association", permuting the classes;
- :func:`drop_scale_test`: "stronger attacks hurt weak classes more"
  (section 3.3) on the logit or probit scale, where a common margin
  distribution shifted per class (pure floor and ceiling effects) predicts no
  correlation, unlike the absolute drop and the relative loss;
  :func:`shifted_margin_null` simulates that null;
- :func:`quasi_independence` / :func:`quasi_independence_null`: figure 2's flip
  matrix against flips i -> j = a_i b_j (no pair-specific affinity), fitted by
  iterative proportional fitting and simulated;
- :func:`paired_equivalence` / :func:`equivalence_bound`: table 3's "barely
  changes" as two one-sided tests (TOST) on a paired difference with a stated
  margin, with or without the paired counts;
- :func:`extreme_vs_runner_up`: the best (worst) class against the runner-up,
  Fisher's exact test, beside :func:`classwise.analysis.stats.rank_call`;
- :func:`target_test`: a CPU preset's robustness target against the honest
  worst case, exact one-sided binomial (a sample can show a target missed, only
  the whole test set can show it met).

docs/statistics.md gives the simulation that justifies each choice
(``experiments/null_simulations.py`` reruns it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .stats import _row_spearman, _spearman, mcnemar_exact


@dataclass(frozen=True)
class HypothesisTest:
    """One test: its name, the null it rejects, statistic, p-value and effect size (with the effect's name)."""

    test: str
    null: str
    statistic: float
    p: float
    effect: float
    effect_name: str

    def significant(self, alpha: float = 0.05) -> bool:
        return not math.isnan(self.p) and self.p < alpha


def _perm_p(observed: float, null: np.ndarray, alternative: str) -> float:
    """Permutation / Monte Carlo p-value with the +1 correction: (1 + #{as extreme}) / (1 + draws)."""
    null = null[~np.isnan(null)]
    if alternative == "greater":
        hits = np.sum(null >= observed - 1e-12)
    elif alternative == "less":
        hits = np.sum(null <= observed + 1e-12)
    elif alternative == "two-sided":
        hits = np.sum(np.abs(null) >= abs(observed) - 1e-12)
    else:
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    return float((1 + hits) / (1 + null.size))


def permutation_spearman(x: np.ndarray, y: np.ndarray, *, alternative: str = "two-sided", n_perm: int = 9999,
                         seed: int = 0) -> HypothesisTest:
    """Spearman rho of (K,) x and y, p-value by permuting y over the K classes (figure 4, section 3.2).

    Null: x and y are unrelated across classes (every pairing equally likely).
    The classes are the units: K = 10 points give few degrees of freedom however
    many test images each class has, which a bootstrap over examples ignores.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rho, _ = _spearman(x, y)
    if math.isnan(rho):
        return HypothesisTest("Spearman, permutation over classes", "no association", rho, rho, rho, "rho")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, y.size)), axis=1)
    null = _row_spearman(x, y[perms])
    return HypothesisTest("Spearman, permutation over classes", "no association", rho,
                          _perm_p(rho, null, alternative), rho, "rho")


def empirical_logit(count: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log((k + 1/2) / (n - k + 1/2)): the log-odds of k of n, finite at 0 and n (Haldane-Anscombe)."""
    k, n = np.asarray(count, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return np.log((k + 0.5) / (n - k + 0.5))


def empirical_probit(count: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Phi^-1((k + 1/2) / (n + 1)): the normal quantile of k of n, finite at 0 and n."""
    from scipy.stats import norm

    k, n = np.asarray(count, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return norm.ppf((k + 0.5) / (n + 1.0))


SCALES = {"logit": empirical_logit, "probit": empirical_probit}


def drop_scale_test(weak: np.ndarray, strong: np.ndarray, n: np.ndarray, *, scale: str = "logit",
                    n_perm: int = 9999, seed: int = 0) -> HypothesisTest:
    """Section 3.3 on a link scale: do weak classes lose more of their robustness to a stronger attack?

    weak, strong: (K,) robust counts under the weaker and the stronger attack on
    the same n (K,) examples; ``scale``: "logit" or "probit". Statistic: Spearman
    rho of g(weak) against the drop g(weak) - g(strong), one-sided permutation p
    (rho < 0: the weak classes lose more). Null: every class has the same margin
    distribution (logistic for logit, normal for probit), shifted, so the drop on
    that scale is the same in every class; the absolute drop and the relative
    loss instead fall with robustness under that null (floor and ceiling effects).
    Ranks see any systematic trend however small: on noise-free counts (n in the
    hundred thousands) the +1/2 corrections alone order the drops, so the test's
    size holds for sampled counts (docs/statistics.md), not for exact curves.
    """
    g = SCALES[scale]
    gw, gs = g(weak, n), g(strong, n)
    t = permutation_spearman(gw, gw - gs, alternative="less", n_perm=n_perm, seed=seed)
    return HypothesisTest(f"Spearman of {scale}(weak) vs {scale} drop, permutation over classes",
                          f"the same {scale} drop in every class (a shifted common margin)", t.statistic, t.p,
                          float(np.median(gw - gs)), f"median {scale} drop")


def shifted_margin_null(weak_rate: np.ndarray, strong_overall: float, n: np.ndarray, *, family: str = "logistic",
                        reps: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulated counts when classes differ only by a shift of one margin distribution (pure floor and ceiling).

    weak_rate: (K,) true robustness under the weaker attack (fractions in (0, 1));
    class k's margin is mu_k + e with e ~ ``family`` ("logistic" or "normal"),
    mu_k set so that P(margin > 0) = weak_rate[k]; the stronger attack needs
    margin > t, with one t for all classes, set so the mean strong rate is
    ``strong_overall``. Robust sets are nested (strong implies weak).
    Returns {"weak", "strong": (reps, K) counts, "strong_rate": (K,)}.
    """
    from scipy.optimize import brentq
    from scipy.stats import logistic, norm

    dist = {"logistic": logistic, "normal": norm}[family]
    w = np.clip(np.asarray(weak_rate, dtype=np.float64), 1e-6, 1 - 1e-6)
    mu = dist.ppf(w)
    t = brentq(lambda t: float(np.mean(dist.sf(t - mu))) - strong_overall, -50.0, 50.0)
    s = dist.sf(t - mu)
    rng = np.random.default_rng(seed)
    n = np.asarray(n, dtype=np.int64)
    weak = rng.binomial(n, w, size=(reps, w.size))
    strong = rng.binomial(weak, s / w)
    return {"weak": weak, "strong": strong, "strong_rate": s}


def quasi_independence(counts: np.ndarray, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Expected flips e_ij = a_i b_j (i != j, 0 on the diagonal) matching counts' row and column sums (IPF).

    counts: (K, K) flips, true class (rows) -> prediction; the diagonal is ignored.
    Iterative proportional fitting of the quasi-independence model (Bishop,
    Fienberg and Holland 1975, ch. 5): the off-diagonal table with no affinity
    between particular pairs, only a per-class tendency to flip and to attract.
    """
    c = np.asarray(counts, dtype=np.float64).copy()
    np.fill_diagonal(c, 0.0)
    mask = 1.0 - np.eye(len(c))
    rows, cols = c.sum(axis=1), c.sum(axis=0)
    e = mask.copy()
    for _ in range(iters):
        with np.errstate(invalid="ignore", divide="ignore"):
            e *= np.nan_to_num(rows / e.sum(axis=1))[:, None]
            e *= np.nan_to_num(cols / e.sum(axis=0))[None, :]
        if np.allclose(e.sum(axis=1), rows, atol=tol * max(rows.sum(), 1)):
            break
    return e


def quasi_independence_null(counts: np.ndarray, statistics: dict[str, Callable[[np.ndarray], float]], *,
                            reps: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Each statistic of ``counts``' off-diagonal flips, simulated under quasi-independence.

    Draws ``reps`` tables of the same total flips, multinomial over the fitted
    e_ij / sum(e) (:func:`quasi_independence`); returns {name: (reps,) values}.
    """
    e = quasi_independence(counts)
    total = int(round(e.sum()))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(total, (e / e.sum()).ravel(), size=reps).reshape(reps, *e.shape)
    return {name: np.array([f(d) for d in draws]) for name, f in statistics.items()}


def symmetry_r(counts: np.ndarray) -> float:
    """Pearson correlation of flips i -> j with flips j -> i over pairs i < j (1: perfectly symmetric)."""
    c = np.asarray(counts, dtype=np.float64)
    iu = np.triu_indices(len(c), 1)
    a, b = c[iu], c.T[iu]
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def symmetry_test(counts: np.ndarray, *, reps: int = 2000, seed: int = 0) -> HypothesisTest:
    """Figure 2: is the flip matrix more symmetric than quasi-independence makes it? One-sided Monte Carlo p.

    Effect: observed r minus the null's median r (a matrix whose rows and
    columns are unequal already gives r > 0 without any pairwise affinity).
    """
    r = symmetry_r(counts)
    null = quasi_independence_null(counts, {"r": symmetry_r}, reps=reps, seed=seed)["r"]
    return HypothesisTest("symmetry r, Monte Carlo under quasi-independence", "flips i->j = a_i b_j", r,
                          _perm_p(r, null, "greater"), r - float(np.nanmedian(null)), "r minus null median")


def _tost(diff: float, var: float, margin: float) -> float:
    """Two one-sided z tests of |true difference| >= margin; p = the larger one-sided p."""
    from scipy.stats import norm

    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        return 0.0 if abs(diff) < margin else 1.0
    return float(max(norm.sf((diff + margin) / se), norm.cdf((diff - margin) / se)))


def paired_equivalence(only_a: int, only_b: int, n: int, margin: float) -> tuple[HypothesisTest, float]:
    """Table 3: is B's accuracy within ``margin`` (a fraction) of A's on the same n examples? (TOST, McNemar).

    only_a, only_b: discordant pairs (right under A only, under B only).
    Difference d = (only_b - only_a) / n with the paired (McNemar) variance
    ((only_a + only_b) / n - d^2) / n; with no discordant pair it takes one, so
    that zero observed disagreement is not read as certainty. Null: |d| >= margin.
    Returns (the TOST, the two-sided exact McNemar p of d = 0).
    """
    if min(only_a, only_b) < 0 or only_a + only_b > n or n <= 0:
        raise ValueError(f"need 0 <= only_a, only_b and only_a + only_b <= n > 0, got {only_a}, {only_b}, {n}")
    d = (only_b - only_a) / n
    var = (max(only_a + only_b, 1) / n - d * d) / n
    test = HypothesisTest(f"paired TOST, margin {100 * margin:g} points", f"abs(difference) >= {100 * margin:g} points",
                          d, _tost(d, var, margin), 100 * d, "difference (points)")
    return test, mcnemar_exact(only_a, only_b)


def equivalence_bound(count_a: np.ndarray, count_b: np.ndarray, n: np.ndarray, margin: float
                      ) -> tuple[HypothesisTest, tuple[float, float]]:
    """:func:`paired_equivalence` when only per-class counts of A and B on the same examples are known.

    The pairing is unknown, so the discordant total is only bounded per class:
    at least |a - b|, at most min(a, n - b) + min(b, n - a). The TOST p grows with
    the discordant pairs (their variance), so its value at the most discordant
    pairing bounds the true p from above: a rejection stays valid. Returns (the
    TOST at the worst pairing, (McNemar p at the least, at the most discordant pairing)).
    """
    a, b, n = (np.asarray(v, dtype=np.int64) for v in (count_a, count_b, n))
    lo = int(np.abs(a - b).sum())
    hi = int((np.minimum(a, n - b) + np.minimum(b, n - a)).sum())
    diff = int(b.sum() - a.sum())  # only_b - only_a, the same for every pairing
    split = lambda m: ((m - diff) // 2, (m + diff) // 2)  # noqa: E731  (only_a, only_b) with m discordant
    worst, _ = paired_equivalence(*split(hi), int(n.sum()), margin)
    bound = HypothesisTest(worst.test + " (pairing unknown: bound at the most discordant pairing)", worst.null,
                           worst.statistic, worst.p, worst.effect, worst.effect_name)
    return bound, (mcnemar_exact(*split(lo)), mcnemar_exact(*split(hi)))


def extreme_vs_runner_up(count: np.ndarray, n: np.ndarray, which: str = "best") -> tuple[int, int, HypothesisTest]:
    """The best (worst) class by rate against the runner-up: Fisher's exact test, two-sided.

    count, n: (K,) integer counts. Returns (extreme class, runner-up class, test)
    with effect = the rate gap in points (>= 0). Ties at the top keep the lower
    index first (so an exact tie gives effect 0 and p = 1). The p-value is not
    adjusted for having picked the extreme of K classes (it understates p).
    """
    from scipy.stats import fisher_exact

    count, n = np.asarray(count, dtype=np.int64), np.asarray(n, dtype=np.int64)
    rate = np.where(n > 0, count / np.maximum(n, 1), np.nan)
    key = np.nan_to_num(-rate if which == "best" else rate, nan=np.inf)
    order = np.argsort(key, kind="stable")
    i, j = int(order[0]), int(order[1])
    p = float(fisher_exact([[count[i], n[i] - count[i]], [count[j], n[j] - count[j]]]).pvalue)
    gap = 100 * abs(float(rate[i] - rate[j]))
    return i, j, HypothesisTest("Fisher exact vs runner-up", "same rate as the runner-up", gap, p, gap,
                                "gap (points)")


def target_test(count: int, n: int, aim: float) -> HypothesisTest:
    """A robustness target: does the (honest, worst-case) robust accuracy reach ``aim`` percent?

    count: examples robust, n: examples attacked (integers). Null: the robust rate
    is at least ``aim`` / 100; exact one-sided binomial test (small p: significantly
    below the aim). Effect: the observed rate minus the aim, in points.
    """
    from scipy.stats import binomtest

    if n <= 0:
        raise ValueError("target_test needs at least one example")
    p = float(binomtest(int(count), int(n), aim / 100, alternative="less").pvalue)
    return HypothesisTest("exact one-sided binomial", f"robust rate >= {aim:g}%", float(count) / n, p,
                          100 * count / n - aim, "observed minus aim (points)")


def heterogeneity_test(count: np.ndarray, n: np.ndarray) -> HypothesisTest:
    """Figure 1: do the K classes differ in robustness at all? Pearson chi-square test of homogeneity (K x 2).

    count, n: (K,) integer counts. Null: one robustness for every class. Effect:
    the largest gap in points (best minus worst class rate).
    """
    from scipy.stats import chi2_contingency

    count, n = np.asarray(count, dtype=np.int64), np.asarray(n, dtype=np.int64)
    keep = n > 0
    table = np.stack([count[keep], n[keep] - count[keep]], axis=1)
    rate = count[keep] / n[keep]
    gap = 100 * float(rate.max() - rate.min())
    if table.sum(axis=0).min() == 0:  # every class at 0% or at 100%: no evidence of a difference
        return HypothesisTest("chi-square homogeneity over classes", "one rate for every class", 0.0, 1.0, gap,
                              "largest gap (points)")
    res = chi2_contingency(table, correction=False)
    return HypothesisTest("chi-square homogeneity over classes", "one rate for every class", float(res.statistic),
                          float(res.pvalue), gap, "largest gap (points)")


def gap_difference_test(count_a: np.ndarray, n_a: np.ndarray, count_b: np.ndarray, n_b: np.ndarray, *,
                        reps: int = 4000, seed: int = 0) -> HypothesisTest:
    """Figure 7: is model B's largest class gap larger than model A's? Parametric bootstrap over test examples.

    count_*, n_*: (K,) integer counts of two fixed models on their test sets.
    Each class's count is redrawn Binomial(n, count / n) (the test-set noise of
    a fixed model); p is the share of draws in which B's gap is not larger
    (one-sided). Effect: B's gap minus A's, in points. The largest gap of a noisy
    estimate is biased upwards, more so for classes with fewer examples.
    """
    rng = np.random.default_rng(seed)

    def gaps(count: np.ndarray, n: np.ndarray) -> np.ndarray:
        count, n = np.asarray(count, dtype=np.int64), np.asarray(n, dtype=np.int64)
        draws = rng.binomial(n, count / n, size=(reps, n.size)) / n
        return 100 * (draws.max(axis=1) - draws.min(axis=1))

    observed = 100 * (np.ptp(np.asarray(count_b) / np.asarray(n_b)) - np.ptp(np.asarray(count_a) / np.asarray(n_a)))
    diff = gaps(count_b, n_b) - gaps(count_a, n_a)
    p = float((1 + np.sum(diff <= 0)) / (1 + reps))
    return HypothesisTest("largest-gap difference, parametric bootstrap over test examples",
                          "B's largest gap no larger than A's", float(observed), p, float(observed),
                          "gap difference (points)")
