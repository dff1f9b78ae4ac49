"""Worst-class statistics: the weakest class with an interval that accounts for taking a minimum.

Robust-fairness papers (FRL, Xu et al. ICML 2021; CFA, Wei et al. CVPR 2023;
WAT, Li & Liu AAAI 2023; DAFA, Lee et al. ICLR 2024) report the *worst-class*
robust accuracy beside the average, as one number with no interval. The
observed minimum over K classes is biased downward (the class that drew the
worst sample looks worse than it is), and the usual interval of the observed
worst class ignores that it was chosen as the minimum, so it covers the true
worst-class rate less often than it claims (``tests/test_fairness_stats.py``
measures both by simulation).

The interval here is simultaneous: one Clopper-Pearson interval per class at
level ``1 - alpha / K`` (Bonferroni). With probability at least ``1 - alpha``
all K intervals hold at once, and then ``[min_k lo_k, min_k hi_k]`` contains
``min_k p_k``: ``min lo <= lo_j* <= p_j*`` for the truly worst class j*, and
``hi_k >= p_k >= min p`` for every k. Exact binomial intervals make the
guarantee hold at every n, not only asymptotically; the price is width
(conservative by construction). docs/statistics.md gives the simulation.

Spread over classes: standard deviation (population, ddof = 0) and the
normalised standard deviation NSD = std / mean, as Fair-ARD (Yue et al. 2023)
and ABSLD (Zhao et al. 2024) report; worst-k mean: the mean of the k lowest
class accuracies. All take per-class counts of robust examples (integers), so
ties are never broken by rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

WORST_K = 3  # classes averaged by the worst-k mean


def clopper_pearson(k: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial intervals (K,) of proportions ``k / n`` (nan where n = 0)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a = 1 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


@dataclass(frozen=True)
class WorstClass:
    """The weakest class of one attack block, in percent.

    ``percent``: the observed minimum over classes with examples; ``low``/``high``:
    the simultaneous interval of the true minimum (module docstring);
    ``classes``: the classes observed at the minimum (several when tied);
    ``candidates``: every class that may be the truly worst one (its simultaneous
    lower bound is at most the smallest upper bound), so "worst class: 3" is a
    call only when ``candidates == (3,)``.
    """

    percent: float
    low: float
    high: float
    classes: tuple[int, ...]
    candidates: tuple[int, ...]
    confidence: float

    @property
    def significant(self) -> bool:
        """True when one class alone can be the worst."""
        return len(self.candidates) == 1


def worst_class(robust: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> WorstClass | None:
    """Worst-class accuracy with a simultaneous interval, from per-class counts (K,) of robust examples.

    Classes with n = 0 are left out; None when no class has examples.
    """
    robust, n = np.asarray(robust, dtype=np.int64), np.asarray(n, dtype=np.int64)
    seen = np.flatnonzero(n > 0)
    if seen.size == 0:
        return None
    level = 1 - (1 - confidence) / seen.size  # Bonferroni over the classes that count
    lo, hi = clopper_pearson(robust[seen], n[seen], level)
    rate = robust[seen] / n[seen]
    at_min = seen[rate == rate.min()]
    candidates = seen[lo <= hi.min()]
    return WorstClass(float(100 * rate.min()), float(100 * lo.min()), float(100 * hi.min()),
                      tuple(int(c) for c in at_min), tuple(int(c) for c in candidates), confidence)


@dataclass(frozen=True)
class ClassSpread:
    """Spread of class-wise accuracies (percent): std (ddof 0), NSD = std / mean, mean of the k lowest."""

    std: float
    nsd: float
    worst_k_mean: float
    k: int


def class_spread(robust: np.ndarray, n: np.ndarray, k: int = WORST_K) -> ClassSpread | None:
    """Spread over the classes with examples, from per-class counts (K,); None when none has any."""
    robust, n = np.asarray(robust, dtype=np.int64), np.asarray(n, dtype=np.int64)
    seen = n > 0
    if not seen.any():
        return None
    percent = 100 * robust[seen] / n[seen]
    mean, std = float(percent.mean()), float(percent.std())
    k = min(k, percent.size)
    nsd = std / mean if mean > 0 else float("nan")
    return ClassSpread(std, nsd, float(np.sort(percent)[:k].mean()), k)


def per_class_counts(labels: np.ndarray, correct: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(robust, n) per class (K,) from per-example labels (N,) and robust flags (N,) bool."""
    labels = np.asarray(labels, dtype=np.int64)
    n = np.bincount(labels, minlength=num_classes)
    robust = np.bincount(labels, weights=np.asarray(correct, dtype=bool), minlength=num_classes)
    return robust.astype(np.int64), n
