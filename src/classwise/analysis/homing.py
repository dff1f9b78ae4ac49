"""Misclassified confusion matrix and the homing matrix (section 3.1, figure 3).

Pure functions over per-sample arrays. An example of true class i is "flipped
to j" (j != i) when its prediction under the attack is j; as in figure 3(a),
which is figure 2(b) in counts, this includes the few examples that were
already wrong when clean (the evaluation never attacks those, so their
adversarial prediction is their clean prediction).
"""

from __future__ import annotations

import numpy as np

from .classwise import confusion_counts


def misclassified_confusion(labels: np.ndarray, adv_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Misclassified confusion matrix (figure 3a): (K, K) int64 counts, diagonal zeroed.

    Entry [i, j] (i != j) counts test examples of class i predicted as j under
    attack; the diagonal (robust examples) is set to 0 so plots can hide it.
    labels, adv_pred: (N,) ints in [0, K).
    """
    counts = confusion_counts(labels, adv_pred, num_classes)
    np.fill_diagonal(counts, 0)
    return counts


def confound_classes(labels: np.ndarray, adv_pred: np.ndarray, num_classes: int) -> list[int]:
    """Classes j that received at least one flip (a non-zero column of figure 3a), ascending."""
    flips = misclassified_confusion(labels, adv_pred, num_classes).sum(axis=0)
    return [int(j) for j in np.flatnonzero(flips)]


def flipped_to(labels: np.ndarray, adv_pred: np.ndarray, j: int) -> np.ndarray:
    """(N,) bool: examples of another class that the attack flipped into class ``j``."""
    labels, adv_pred = np.asarray(labels), np.asarray(adv_pred)
    return (adv_pred == j) & (labels != j)


def homing_counts(labels: np.ndarray, adv_pred: np.ndarray, homed: dict[int, np.ndarray],
                  num_classes: int) -> np.ndarray:
    """Homing confusion matrix (figure 3b): (K, K) float64 counts, NaN for columns not retrained.

    Entry [i, j] counts the examples of class i flipped to j by the original
    model (``adv_pred``) that are robust (clean-correct and correct under the
    attack) for the model retrained without class j: ``homed[j]`` is that
    model's (N,) bool robustness on the same examples (entries outside
    :func:`flipped_to` are ignored). So H[i, j] <= M[i, j] of
    :func:`misclassified_confusion`; the diagonal is 0.
    """
    labels = np.asarray(labels)
    out = np.full((num_classes, num_classes), np.nan)
    for j, robust in homed.items():
        mask = flipped_to(labels, adv_pred, j) & np.asarray(robust, dtype=bool)
        out[:, j] = np.bincount(labels[mask], minlength=num_classes)
        out[j, j] = 0.0
    return out


def homing_share(misclassified: np.ndarray, homing: np.ndarray) -> float:
    """Share in [0, 1] of the flipped examples that home, over the retrained columns.

    misclassified: (K, K) counts of figure 3a; homing: (K, K) of
    :func:`homing_counts` (NaN columns = not retrained, left out). NaN when
    the retrained columns hold no flipped example.
    """
    cols = ~np.all(np.isnan(homing), axis=0)
    flipped = float(np.asarray(misclassified)[:, cols].sum())
    return float(np.nansum(homing[:, cols]) / flipped) if flipped > 0 else float("nan")
