"""How class-wise numbers spread: robustness intervals, gaps of two models, class samples.

Figures 6 and 7 and the 12-class view of figures 1 and 4 for many-class
datasets (CIFAR-100, ImageNet). Pure functions of per-class arrays (percent).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .classwise import best_worst

INTERVAL_LABELS = tuple(["[0,10]"] + [f"({a},{a + 10}]" for a in range(10, 100, 10)])


def robustness_intervals(per_class: np.ndarray) -> np.ndarray:
    """Number of classes per 10% robustness interval (figure 6): (10,) int64.

    Intervals as the paper labels them: [0,10], (10,20], ..., (90,100]
    (:data:`INTERVAL_LABELS`). per_class: (K,) percent in [0, 100]; NaN
    classes (no test examples) are left out.
    """
    v = np.asarray(per_class, dtype=np.float64)
    v = v[~np.isnan(v)]
    if np.any((v < 0) | (v > 100)):
        raise ValueError("per-class values must be percentages in [0, 100]")
    bins = np.clip(np.ceil(v / 10.0).astype(np.int64) - 1, 0, 9)  # 10 -> bin 0, 10.01 -> bin 1
    return np.bincount(bins, minlength=10)


def gap_comparison(standard: np.ndarray, robust: np.ndarray) -> dict[str, Any]:
    """Largest class gap of a standard model's accuracy and a robust model's robustness (figure 7).

    standard, robust: (K,) percent per class (clean accuracy of the standard
    model; robustness of the robust model). Returns {"standard": {...},
    "robust": {...}, "ratio"}, each block {"best", "worst", "gap"} with class
    indices and the gap in percentage points; ratio = robust gap / standard gap.
    """
    standard, robust = np.asarray(standard, np.float64), np.asarray(robust, np.float64)
    if standard.shape != robust.shape or standard.ndim != 1:
        raise ValueError(f"need two (K,) arrays, got {standard.shape} and {robust.shape}")

    def block(v: np.ndarray) -> dict[str, Any]:
        best, worst = best_worst(v)
        return {"best": best, "worst": worst, "gap": float(v[best] - v[worst])}

    out: dict[str, Any] = {"standard": block(standard), "robust": block(robust)}
    gap = out["standard"]["gap"]
    out["ratio"] = out["robust"]["gap"] / gap if gap > 0 else float("nan")
    return out


def sample_classes(num_classes: int, n: int = 12, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n`` class indices, ascending (the paper's 12 classes of CIFAR-100/ImageNet).

    All classes when ``num_classes <= n``. Same seed, same classes.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if num_classes <= n:
        return np.arange(num_classes)
    return np.sort(np.random.default_rng(seed).choice(num_classes, size=n, replace=False))
