"""Class-wise accuracy, robustness confusion, superclass folding, weight norms.

Pure functions over the per-sample arrays of :class:`classwise.results.EvalResults`
(section 3 of the paper). Percentages are in [0, 100]. An example is robust under
an attack iff its adversarial prediction equals its label, so the same functions
give clean accuracy (clean predictions) and robustness (adversarial predictions).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..results import EvalResults


def _check_pair(labels: np.ndarray, pred: np.ndarray, num_classes: int | None = None) -> None:
    """Raise ValueError unless labels and pred are equal-length 1-D int arrays in range."""
    if labels.ndim != 1 or labels.shape != pred.shape:
        raise ValueError(f"labels {labels.shape} and pred {pred.shape} must be equal 1-D shapes")
    if num_classes is None or labels.size == 0:
        return
    lo, hi = min(labels.min(), pred.min()), max(labels.max(), pred.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels/predictions outside [0, {num_classes}): found {lo}..{hi}")


def classwise_accuracy(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class accuracy in percent (figure 1, table 2 columns).

    labels, pred: (N,) ints in [0, K). Returns (K,) float64; NaN for a class
    with no examples. With adversarial predictions this is class-wise robustness.
    """
    labels, pred = np.asarray(labels), np.asarray(pred)
    _check_pair(labels, pred, num_classes)
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)
    hits = np.bincount(labels[pred == labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * hits / total, np.nan)


def overall_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy over all N examples in percent (table 2 "Tot."); NaN when N = 0."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    _check_pair(labels, pred)
    return float(100.0 * np.mean(pred == labels)) if labels.size else float("nan")


def confusion_counts(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    _check_pair(labels, pred, num_classes)
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, pred), 1)
    return counts


def row_percent(counts: np.ndarray) -> np.ndarray:
    """Normalise each row of a (R, C) count matrix to percent; an empty row is NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 100.0 * counts / rows, np.nan)


def robustness_confusion(labels: np.ndarray, adv_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Robustness confusion matrix (figure 2): (K, K) percent of each true-class row.

    Entry [i, j] is the share of class-i test examples predicted as j under attack;
    the diagonal is class-wise robustness. A class with no examples is a NaN row.
    """
    return row_percent(confusion_counts(labels, adv_pred, num_classes))


def fold_superclasses(counts: np.ndarray, groups: dict[str, list[int]]) -> np.ndarray:
    """Fold a (K, K) count matrix into (G, G) superclass counts (figure 2, table 1).

    groups: superclass name -> class indices, in output order; the groups must
    partition range(K) (disjoint and covering). Entry [g, h] sums counts[i, j]
    over i in group g and j in group h. Row-normalise with :func:`row_percent`.
    """
    counts = np.asarray(counts)
    members = [list(v) for v in groups.values()]
    flat = sorted(i for m in members for i in m)
    if flat != list(range(counts.shape[0])):
        raise ValueError(f"superclass groups must partition classes 0..{counts.shape[0] - 1}, got {groups}")
    return np.array([[counts[np.ix_(g, h)].sum() for h in members] for g in members], dtype=counts.dtype)


def best_worst(per_class: np.ndarray) -> tuple[int, int]:
    """(index of the highest, index of the lowest) value ignoring NaN; first on ties.

    per_class: (K,). The most robust and the most vulnerable class (table 2 marks).
    """
    v = np.asarray(per_class, dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        raise ValueError("best_worst needs at least one non-NaN value")
    return int(np.nanargmax(v)), int(np.nanargmin(v))


def largest_gap(per_class: np.ndarray) -> float:
    """Largest class-wise gap max - min ignoring NaN (figure 1 shaded band, figure 7)."""
    best, worst = best_worst(per_class)
    v = np.asarray(per_class, dtype=np.float64)
    return float(v[best] - v[worst])


def minmax(v: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] ignoring NaN (figure 4); a constant vector gives zeros."""
    v = np.asarray(v, dtype=np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    return (v - lo) / (hi - lo) if hi > lo else np.where(np.isnan(v), np.nan, 0.0)


def weight_norms(weight: np.ndarray) -> np.ndarray:
    """L2 norm of each class's classifier weight row ||w_i||_2 (section 3.2, figure 4).

    weight: (K, D), PyTorch ``nn.Linear.weight`` layout. Returns (K,) float64.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2:
        raise ValueError(f"classifier weight must be (K, D), got shape {weight.shape}")
    return np.linalg.norm(weight, axis=1)


def norm_robustness_correlation(norms: np.ndarray, robustness: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation (rho, p-value) of weight norm vs robustness per class.

    norms, robustness: (K,). Classes where either is NaN are dropped; fewer than
    three classes left, or a constant vector, gives (nan, nan).
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(norms, dtype=np.float64), np.asarray(robustness, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = spearmanr(x[keep], y[keep])
    return float(res.statistic), float(res.pvalue)


WORST = "worst"  # the entry of per-sample results holding the worst case over all attacks


def worst_case(labels: np.ndarray, clean_pred: np.ndarray, adv_preds: list[np.ndarray]) -> np.ndarray:
    """Per-example worst case over attacks (AutoAttack's robust accuracy), as a prediction.

    labels, clean_pred, each adv_pred: (N,). An example keeps its clean prediction when
    that is wrong, else takes the prediction of the first attack (in order) that fooled
    it, else its label: it is robust only if it survives every attack. (N,) int64.
    """
    pred = clean_pred.copy()
    alive = clean_pred == labels
    for adv in adv_preds:
        fooled = alive & (adv != labels)
        pred[fooled] = adv[fooled]
        alive &= ~fooled
    return pred


def relative_robustness(results: EvalResults, baseline: str | None = None) -> dict[str, np.ndarray]:
    """Robustness of each Temperature-PGD attack minus the baseline's, in percentage points.

    Paper, section 4 (tables 3 and 4). Returns name -> (K + 1,) float64: the
    total first, then one value per class. Attacks are told apart by their
    recorded facts (family "tpgd" vs "pgd"); ``baseline`` defaults to the one
    attack of family "pgd".
    """
    families = {a: results.facts.get(a, {}).get("family") for a in results.attacks}
    if baseline is None:
        pgd = [a for a, f in families.items() if f == "pgd"]
        if len(pgd) != 1:
            raise ValueError(f"give the baseline: expected one attack of family 'pgd', found {pgd or 'none'}")
        baseline = pgd[0]
    k = results.num_classes

    def row(name: str) -> np.ndarray:
        pred = results.adv_pred[name]
        return np.concatenate([[overall_accuracy(results.labels, pred)], classwise_accuracy(results.labels, pred, k)])

    base = row(baseline)
    return {name: row(name) - base for name, family in families.items() if family == "tpgd"}
