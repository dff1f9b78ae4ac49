"""Per-class robustness over every eps from minimal adversarial distances, and L-inf vs L2.

Pure functions over per-sample results. A minimum-norm attack (``fmn``)
records each example's smallest fooling perturbation ``d`` in
``EvalResults.extras["min_dist/<attack>"]`` (0: misclassified when clean,
inf: none found, NaN: not evaluated). An example is robust at radius eps
exactly when ``d > eps``, so one attack run gives the robust accuracy at
every eps: the curve, its per-class medians, and the eps at which each class
falls to 50% (RobustBench-style robustness curves, but class by class).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

from ..results import EvalResults
from .classwise import WORST, classwise_accuracy
from .facts import is_targeted, norm_of

MIN_DIST = "min_dist/"  # extras key prefix of minimal distances
CURVE_POINTS = 21


def _evaluated(min_dist: np.ndarray) -> np.ndarray:
    return ~np.isnan(np.asarray(min_dist, dtype=np.float64))


def robustness_curve(labels: np.ndarray, min_dist: np.ndarray, eps: np.ndarray,
                     num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Robust accuracy (%) at each eps: overall (E,) and per class (K, E).

    labels: (N,) ints in [0, K); min_dist: (N,) minimal distances (NaN: not
    evaluated, left out); eps: (E,) radii. Robust at eps means ``d > eps``;
    NaN for a class without evaluated examples. Non-increasing in eps.
    """
    labels, d = np.asarray(labels), np.asarray(min_dist, dtype=np.float64)
    keep = _evaluated(d)
    labels, d = labels[keep], d[keep]
    robust = d[:, None] > np.asarray(eps, dtype=np.float64)[None, :]  # (N, E)
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)  # (K,)
    per_class = np.stack([np.bincount(labels[robust[:, e]], minlength=num_classes)
                          for e in range(robust.shape[1])], axis=1) if robust.size else np.zeros((num_classes, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(total[:, None] > 0, 100.0 * per_class / total[:, None], np.nan)
    overall = 100.0 * robust.mean(axis=0) if len(d) else np.full(robust.shape[1], np.nan)
    return overall, per_class


def eps_at_fraction(min_dist: np.ndarray, fraction: float = 0.5) -> float:
    """Smallest eps at which robust accuracy (share with ``d > eps``) is <= ``fraction``.

    That is the ceil(fraction' * n)-th smallest distance, fraction' = 1 - fraction
    (inf when too few examples are ever fooled; NaN for no examples).
    """
    d = np.sort(np.asarray(min_dist, dtype=np.float64)[_evaluated(min_dist)])
    if d.size == 0:
        return math.nan
    rank = max(1, math.ceil((1.0 - fraction) * d.size - 1e-9))
    return float(d[rank - 1])


def median_distance(min_dist: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Median minimal distance and its distribution-free (order-statistic) ``level`` interval.

    The interval is scipy's ``quantile_test`` confidence interval of the median
    (binomial order statistics; ends NaN when too few examples, inf allowed).
    Returns (median, low, high); all NaN for no examples.
    """
    d = np.asarray(min_dist, dtype=np.float64)[_evaluated(min_dist)]
    if d.size == 0:
        return math.nan, math.nan, math.nan
    median = float(np.median(d))
    with warnings.catch_warnings():  # inf distances make the test statistic's arithmetic warn
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.quantile_test(d, q=median if math.isfinite(median) else 0.0, p=0.5).confidence_interval(level)
    return median, float(ci.low), float(ci.high)


def default_eps_grid(min_dist: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """``points`` radii from 0 to the largest finite minimal distance (0..1 when none is finite)."""
    d = np.asarray(min_dist, dtype=np.float64)
    finite = d[np.isfinite(d)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return np.linspace(0.0, top, points)


def _num(x: float) -> float | str | None:
    """JSON-ready: NaN -> None, +-inf -> "inf"/"-inf", else a float."""
    x = float(x)
    return None if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else x


def distance_curves(results: EvalResults, attack: str, eps: np.ndarray | None = None) -> dict[str, Any]:
    """Everything of one minimum-norm attack, per class and overall, JSON-ready.

    {"attack", "norm", "eps": (E,), "overall": (E,) %, "per_class": K x (E,) %,
    "median": {"overall", "per_class"} each {"median", "low", "high"} (95%
    order-statistic interval), "eps50": {"overall", "per_class"} (the eps at
    which robust accuracy falls to 50%), "n": per-class evaluated counts}.
    """
    d = np.asarray(results.extras[MIN_DIST + attack], dtype=np.float64)
    labels = results.labels
    k = results.num_classes or int(labels.max(initial=-1)) + 1
    eps = default_eps_grid(d) if eps is None else np.asarray(eps, dtype=np.float64)
    overall, per_class = robustness_curve(labels, d, eps, k)
    by_class = [d[labels == c] for c in range(k)]

    def med(x: np.ndarray) -> dict[str, Any]:
        return dict(zip(("median", "low", "high"), map(_num, median_distance(x))))

    return {
        "attack": attack, "norm": norm_of(results, attack), "eps": [float(e) for e in eps],
        "overall": [_num(v) for v in overall], "per_class": [[_num(v) for v in row] for row in per_class],
        "median": {"overall": med(d), "per_class": [med(x) for x in by_class]},
        "eps50": {"overall": _num(eps_at_fraction(d)), "per_class": [_num(eps_at_fraction(x)) for x in by_class]},
        "n": [int(_evaluated(x).sum()) for x in by_class],
    }


def curves_summary(results: EvalResults) -> dict[str, dict[str, Any]]:
    """:func:`distance_curves` of every attack with minimal distances in ``results`` (may be empty)."""
    return {key[len(MIN_DIST):]: distance_curves(results, key[len(MIN_DIST):])
            for key in results.extras if key.startswith(MIN_DIST) and key[len(MIN_DIST):] in results.adv_pred}


def norm_attacks(results: EvalResults, pick: Callable[[list[str]], str | None]) -> dict[str, str]:
    """norm -> the attack ``pick`` chooses among that norm's untargeted attacks (norms without one left out)."""
    plain = [a for a in results.attacks if a != WORST and not is_targeted(results, a)]
    chosen = {n: pick([a for a in plain if norm_of(results, a) == n]) for n in ("linf", "l2")}
    return {n: a for n, a in chosen.items() if a is not None}


def compare_norms(results: EvalResults, pick: Callable[[list[str]], str | None]) -> dict[str, Any] | None:
    """:func:`norm_comparison` of the attacks ``pick`` chooses per norm; None unless both norms ran."""
    attacks = norm_attacks(results, pick)
    if len(attacks) < 2:
        return None
    per_class = {}
    for n, a in attacks.items():
        m = results.evaluated(a)
        k = results.num_classes or int(results.labels.max(initial=-1)) + 1
        per_class[n] = classwise_accuracy(results.labels[m], results.adv_pred[a][m], k)
    return norm_comparison(per_class, attacks)


def norm_comparison(per_class: dict[str, np.ndarray], attacks: dict[str, str]) -> dict[str, Any]:
    """Which classes are weak under L-inf and under L2, and how well the two rankings agree.

    per_class: norm ("linf", "l2") -> (K,) class-wise robustness (%); attacks:
    norm -> the attack it comes from. Returns {"attacks", "per_class", "rank"
    (1 = weakest class, per norm), "weakest" (class index per norm),
    "spearman": {"rho", "p"}} (rho None with fewer than 3 classes with values or
    a constant ranking). Classes with NaN in either norm are left out of rho.
    """
    a, b = (np.asarray(per_class[n], dtype=np.float64) for n in ("linf", "l2"))
    ok = ~np.isnan(a) & ~np.isnan(b)
    rho = p = None
    if ok.sum() >= 3 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0:
        res = stats.spearmanr(a[ok], b[ok])
        rho, p = float(res.statistic), float(res.pvalue)
    rank = {n: stats.rankdata(np.where(np.isnan(v), np.inf, v), method="min").astype(int).tolist()
            for n, v in (("linf", a), ("l2", b))}
    return {
        "attacks": dict(attacks), "per_class": {n: [_num(v) for v in per_class[n]] for n in ("linf", "l2")},
        "rank": rank, "weakest": {n: int(np.nanargmin(v)) if ok.any() else None for n, v in (("linf", a), ("l2", b))},
        "spearman": {"rho": rho, "p": p},
    }
