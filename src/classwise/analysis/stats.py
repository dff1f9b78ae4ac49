"""Uncertainty of class-wise numbers: intervals, paired tests, rank correlations.

A class-wise claim ("cat is the weakest class", "PGD gains most on the weak
classes", "robustness follows the weight norm", paper sections 3.1-3.3) rests on
about a hundred test images per class, so every number here comes with its
uncertainty. Pure functions over counts or per-sample boolean arrays:

- :func:`wilson_interval` / :func:`classwise_interval`: Wilson score interval of
  a proportion (no continuity correction; identical to scipy's
  ``binomtest(k, n).proportion_ci(method="wilson")``, written in closed form so
  that it is vectorised over classes).
- :func:`mcnemar_exact` / :func:`paired_classwise`: the exact McNemar test of two
  attacks (or clean vs an attack) on the same examples, per class, with Holm's
  correction over classes.
- :func:`spearman_with_ci` / :func:`spearman_over_examples`: Spearman's rho with
  its p-value and a bootstrap interval (over classes, or over test examples).
- :func:`rank_call`: whether the best / worst class is a significant call or is
  "tied with" others.

Percentages are in [0, 100], fractions in [0, 1]; NaN marks "no data".
See docs/statistics.md for a worked example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _z(confidence: float) -> float:
    """Two-sided standard normal quantile for ``confidence`` in (0, 1)."""
    from scipy.stats import norm

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_bounds(k: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson score interval (lo, hi) as fractions; NaN where n = 0.

    k, n: broadcastable arrays of successes and trials (0 <= k <= n).
    lo, hi = (k + z^2/2 -+ z sqrt(k (n - k) / n + z^2 / 4)) / (n + z^2).
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("counts must satisfy 0 <= k <= n")
    z2 = _z(confidence) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + z2 / 2.0) / (n + z2)
        half = math.sqrt(z2) / (n + z2) * np.sqrt(k * (n - k) / n + z2 / 4.0)
        lo, hi = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    empty = n == 0
    return np.where(empty, np.nan, np.where(k == 0, 0.0, lo)), np.where(empty, np.nan, np.where(k == n, 1.0, hi))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials, as fractions; (nan, nan) for n = 0.

    >>> [round(v, 4) for v in wilson_interval(47, 100)]
    [0.3751, 0.5671]
    """
    lo, hi = wilson_bounds(np.asarray(k), np.asarray(n), confidence)
    return float(lo), float(hi)


@dataclass(frozen=True)
class ClassInterval:
    """Per-class counts and interval of a proportion (accuracy or robustness).

    n: (K,) int64 examples per class; count: (K,) int64 correct ones;
    ci: (K, 2) float64 [lo, hi] in percent (NaN rows for empty classes).
    """

    n: np.ndarray
    count: np.ndarray
    ci: np.ndarray

    @property
    def percent(self) -> np.ndarray:
        """(K,) point estimates in percent; NaN for empty classes."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, 100.0 * self.count / np.maximum(self.n, 1), np.nan)

    @property
    def half_width(self) -> np.ndarray:
        """(K,) half the interval width in percent (tables print the interval itself: it is asymmetric near 0 and 100)."""
        return (self.ci[:, 1] - self.ci[:, 0]) / 2.0


def classwise_interval(labels: np.ndarray, correct: np.ndarray, num_classes: int,
                       confidence: float = 0.95) -> ClassInterval:
    """Per-class n, count and Wilson interval (percent) of ``correct`` (section 3, table 2).

    labels: (N,) ints in [0, K); correct: (N,) bool (clean-correct or robust).
    """
    labels, correct = np.asarray(labels), np.asarray(correct, dtype=bool)
    if labels.shape != correct.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and correct {correct.shape} must be equal 1-D shapes")
    n = np.bincount(labels, minlength=num_classes).astype(np.int64)
    count = np.bincount(labels[correct], minlength=num_classes).astype(np.int64)
    lo, hi = wilson_bounds(count, n, confidence)
    return ClassInterval(n, count, 100.0 * np.stack([lo, hi], axis=1))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs b and c.

    b: examples right under A and wrong under B; c: the reverse. Under the null
    b ~ Binomial(b + c, 1/2) (scipy ``binomtest``); no discordant pair gives 1.0.
    """
    from scipy.stats import binomtest

    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error over the given tests; NaN kept)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.array([])
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True)
class PairedComparison:
    """Per-class paired comparison of A and B on the same examples.

    All arrays are (K,): n (examples seen by both), a and b (percent correct),
    diff = b - a (percentage points; negative = B is stronger / hurts more),
    only_a / only_b (discordant pairs), p (exact McNemar), p_holm (Holm over
    classes) and significant (p_holm < alpha).
    """

    n: np.ndarray
    a: np.ndarray
    b: np.ndarray
    diff: np.ndarray
    only_a: np.ndarray
    only_b: np.ndarray
    p: np.ndarray
    p_holm: np.ndarray
    significant: np.ndarray
    alpha: float


def paired_classwise(labels: np.ndarray, correct_a: np.ndarray, correct_b: np.ndarray, num_classes: int,
                     alpha: float = 0.05) -> PairedComparison:
    """Per-class exact McNemar comparison of two correctness arrays (tables 3, 4, 6).

    labels, correct_a, correct_b: (N,) over the SAME examples (restrict them to
    the examples both attacks saw first). A drop is marked significant when its
    Holm-adjusted p-value over the K classes is below ``alpha``, so that a table
    of K classes does not mark alpha * K drops by chance.
    """
    labels = np.asarray(labels)
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    n = np.bincount(labels, minlength=num_classes)
    only_a = np.bincount(labels[ca & ~cb], minlength=num_classes)
    only_b = np.bincount(labels[cb & ~ca], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(n > 0, 100.0 * np.bincount(labels[ca], minlength=num_classes) / n, np.nan)
        b = np.where(n > 0, 100.0 * np.bincount(labels[cb], minlength=num_classes) / n, np.nan)
    p = np.array([mcnemar_exact(x, y) if m else np.nan for x, y, m in zip(only_a, only_b, n)])
    p_holm = holm(p)
    return PairedComparison(n, a, b, b - a, only_a, only_b, p, p_holm, np.nan_to_num(p_holm, nan=1.0) < alpha, alpha)


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho with its two-sided p-value and a bootstrap interval.

    ci: (lo, hi) percentile interval at ``confidence``; NaN when undefined.
    k: number of classes used; method: what the bootstrap resampled.
    """

    rho: float
    p: float
    ci: tuple[float, float]
    k: int
    confidence: float
    method: str

    def to_json(self) -> dict:
        fin = lambda v: None if math.isnan(v) else float(v)  # noqa: E731
        return {"rho": fin(self.rho), "p": fin(self.p), "ci": [fin(self.ci[0]), fin(self.ci[1])],
                "k": self.k, "confidence": self.confidence, "bootstrap": self.method}


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """scipy's Spearman (rho, p); (nan, nan) for < 3 points or a constant vector."""
    from scipy.stats import spearmanr

    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def _row_spearman(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman rho of matching rows of xs and ys (B, K), or of one x (K,) against every row of ys.

    Pearson correlation of average ranks (scipy ``rankdata``), as Spearman's rho
    is defined with ties; a constant row gives NaN.
    """
    from scipy.stats import rankdata

    rx = rankdata(xs, axis=-1)
    ry = rankdata(ys, axis=1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=-1) * (ry ** 2).sum(axis=1))


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be equal 1-D shapes")
    return ~(np.isnan(x) | np.isnan(y))


def spearman_with_ci(x: np.ndarray, y: np.ndarray, *, n_boot: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> Correlation:
    """Spearman rho of (K,) x and y, p-value, and a bootstrap CI over classes (pairs resampled).

    NaN pairs are dropped. The bootstrap uses ``numpy.random.default_rng(seed)``,
    so a result is reproducible; resamples with a constant side are skipped.
    """
    keep = _finite_pairs(x, y)
    x, y = np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep]
    rho, p = _spearman(x, y)
    if math.isnan(rho):
        return Correlation(rho, p, (float("nan"), float("nan")), int(x.size), confidence, "classes")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boots = _row_spearman(x[idx], y[idx])
    return Correlation(rho, p, _percentile_ci(boots, confidence), int(x.size), confidence, "classes")


def spearman_over_examples(x: np.ndarray, count: np.ndarray, n: np.ndarray, *, n_boot: int = 2000,
                           confidence: float = 0.95, seed: int = 0) -> Correlation:
    """Spearman rho of x (K,) against per-class accuracy count / n, CI by resampling test examples.

    The bootstrap resamples each class's n test examples with replacement (a
    stratified bootstrap: the test set fixes the class sizes); the number correct
    in a resample is then exactly Binomial(n, count / n), which is what is drawn,
    with ``numpy.random.default_rng(seed)``. x is held fixed (e.g. weight norms of
    one trained model, figure 4), so the interval shows the test-set noise only.
    """
    count, n = np.asarray(count, dtype=np.int64), np.asarray(n, dtype=np.int64)
    keep = _finite_pairs(x, np.where(n > 0, 0.0, np.nan))
    x, count, n = np.asarray(x, dtype=np.float64)[keep], count[keep], n[keep]
    rho, p = _spearman(x, count / np.maximum(n, 1))
    if math.isnan(rho):
        return Correlation(rho, p, (float("nan"), float("nan")), int(x.size), confidence, "examples")
    draws = np.random.default_rng(seed).binomial(n, count / n, size=(n_boot, x.size)) / n
    return Correlation(rho, p, _percentile_ci(_row_spearman(x, draws), confidence), int(x.size), confidence,
                       "examples")


def weak_hurt_more(weak_robust: np.ndarray, strong_robust: np.ndarray, **kwargs) -> Correlation:
    """Do stronger attacks hurt weak classes more (paper section 3.3)? Spearman of robustness vs drop.

    weak_robust, strong_robust: (K,) class-wise robustness (percent) under the
    weaker and the stronger attack on the same examples. Correlates the weaker
    attack's robustness with the drop weak - strong; rho < 0 (with small p) says
    the weak classes lose more. Keyword arguments go to :func:`spearman_with_ci`.
    Note: both sides share the weaker attack's noise, which biases rho upwards
    (towards "no effect"), so a significant negative rho is a conservative call.
    """
    w, s = np.asarray(weak_robust, dtype=np.float64), np.asarray(strong_robust, dtype=np.float64)
    return spearman_with_ci(w, w - s, **kwargs)


def weak_hurt_more_counts(weak_count: np.ndarray, strong_count: np.ndarray, n: np.ndarray, **kwargs) -> Correlation:
    """:func:`weak_hurt_more` from integer counts: (K,) robust counts under each attack on the same n (K,) examples.

    The drop is 100 (weak - strong) / n, computed from the integer difference,
    so two classes that lose the same count of the same n get exactly the same
    drop (a tie), which differences of rounded percentages can break.
    """
    w, s = np.asarray(weak_count, dtype=np.int64), np.asarray(strong_count, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, 100.0 * w / n, np.nan)
        drop = np.where(n > 0, 100.0 * (w - s) / n, np.nan)
    return spearman_with_ci(rate, drop, **kwargs)


@dataclass(frozen=True)
class RankCall:
    """The best or worst class and whether that call is significant.

    index: the class with the extreme point estimate; tied_with: other classes
    whose interval overlaps its interval, closest estimate first (empty when the
    call is significant).
    """

    index: int
    significant: bool
    tied_with: tuple[int, ...]


def rank_call(percent: np.ndarray, ci: np.ndarray, which: str = "worst") -> RankCall:
    """Is the worst (or best) class a significant call? Decided by interval overlap.

    percent: (K,) point estimates; ci: (K, 2) intervals (same units). The call is
    significant iff the extreme class's interval is disjoint from every other
    class's interval, in particular from the runner-up's; otherwise it is "tied
    with" each class whose interval overlaps its own. We chose interval
    disjointness over a two-sample test because it is one rule for any K and
    conservative: two disjoint 95% Wilson intervals of equal n imply a
    difference at roughly p < 0.01, which also absorbs some of the selection
    effect of picking the extreme of K classes. Classes with NaN are ignored.
    """
    v, ci = np.asarray(percent, dtype=np.float64), np.asarray(ci, dtype=np.float64)
    valid = ~np.isnan(v) & ~np.any(np.isnan(ci), axis=1)
    if not valid.any():
        raise ValueError("rank_call needs at least one class with data")
    if which not in ("worst", "best"):
        raise ValueError(f"which must be 'worst' or 'best', got {which!r}")
    masked = np.where(valid, v, np.inf if which == "worst" else -np.inf)
    i = int(np.argmin(masked) if which == "worst" else np.argmax(masked))
    overlap = valid & (ci[:, 0] <= ci[i, 1]) & (ci[:, 1] >= ci[i, 0])
    overlap[i] = False
    tied = np.flatnonzero(overlap)
    tied = tied[np.argsort(np.abs(v[tied] - v[i]), kind="stable")]
    return RankCall(i, tied.size == 0, tuple(int(t) for t in tied))
