"""Targeted attacks class by class: can class i be pushed into class j?

Pure functions over per-sample results. A targeted attack (``pgd20@target=all``,
``cw-margin@target=likely``, ``pgd20@target=3``) records per example and
target class j whether the run toward j ended classified as j, in
``EvalResults.extras["target_hits/<attack>"]`` (N, K) int8: 1 reached, 0 not
reached, -1 not tried (j is the label, j was not a target of this example, or
the example was misclassified when clean and not attacked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..results import EvalResults

TARGET_HITS = "target_hits/"  # extras key prefix


def targeted_success(labels: np.ndarray, hits: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-by-class targeted success (%) and the number of tries behind each cell.

    labels: (N,) ints in [0, K); hits: (N, K) int (1 / 0 / -1 as above).
    Returns (success (K, K) float64, tries (K, K) int64): row i = true class,
    column j = target class; success NaN where nothing was tried (always on
    the diagonal: an example is never targeted at its own class). Read it
    beside the untargeted robustness confusion matrix.
    """
    labels, hits = np.asarray(labels), np.asarray(hits)
    if hits.shape != (len(labels), num_classes):
        raise ValueError(f"hits must be (N, K) = ({len(labels)}, {num_classes}), got {hits.shape}")
    onehot = np.eye(num_classes, dtype=np.int64)[labels]  # (N, K)
    tries = onehot.T @ (hits >= 0).astype(np.int64)
    reached = onehot.T @ (hits == 1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tries > 0, 100.0 * reached / tries, np.nan), tries


def targeted_summary(results: EvalResults) -> dict[str, dict[str, Any]]:
    """Per targeted attack in ``results``: {"success": K x K % (None: not tried), "tries": K x K}."""
    out = {}
    for key, hits in results.extras.items():
        if key.startswith(TARGET_HITS):
            success, tries = targeted_success(results.labels, hits, hits.shape[1])
            out[key[len(TARGET_HITS):]] = {
                "success": [[None if np.isnan(v) else float(v) for v in row] for row in success],
                "tries": tries.tolist(),
            }
    return out
