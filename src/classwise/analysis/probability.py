"""Smoothness of the predicted probability vector per class (section 4, figure 5a/5e)."""

from __future__ import annotations

import numpy as np


def probability_variance(probs: np.ndarray) -> np.ndarray:
    """Variance of each example's predicted probability vector over its K entries.

    probs: (N, K) softmax outputs. Returns (N,) float64, the population
    variance (ddof 0) ``mean_k (p_k - 1/K)^2``: 0 for the uniform vector,
    ``(K - 1) / K^2`` for a one-hot vector. A low value is a smooth output.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, K), got shape {probs.shape}")
    return probs.var(axis=1)


def classwise_probability_variance(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the mean over its test examples of :func:`probability_variance` (figure 5a).

    The paper's recipe: for class c, take the variance of the predicted
    distribution of every test example whose true class is c, then average.
    labels: (N,) ints in [0, K); probs: (N, K). Returns (K,) float64, NaN for
    a class with no examples.
    """
    labels = np.asarray(labels)
    var = probability_variance(probs)
    if labels.shape != var.shape:
        raise ValueError(f"labels {labels.shape} and probs {np.shape(probs)} disagree on N")
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)
    sums = np.bincount(labels, weights=var, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums / total, np.nan)
