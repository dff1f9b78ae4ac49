"""Per-sample results that fill every block of a summary (imported, not collected)."""

from __future__ import annotations

from typing import Any

import numpy as np

from classwise.results import EvalResults

NAMES = ["plane", "car", "bird", "cat", "ship"]
GROUPS = {"transport": [0, 1, 4], "animals": [2, 3]}


def rich_results() -> EvalResults:
    """5 classes x 12 examples; fgsm, pgd20, an L2 minimum-norm attack (curves, norms) and a targeted one."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 12)

    def flip(p: float) -> np.ndarray:
        return np.where(rng.random(labels.size) < p, (labels + 1) % 5, labels)

    dist = rng.uniform(0.0, 2.0, labels.size).astype(np.float32)
    dist[::7] = np.inf
    hits = np.where(rng.random((labels.size, 5)) < 0.4, 1, 0)
    hits[np.arange(labels.size), labels] = -1
    pgd = {"family": "pgd", "norm": "linf", "eps": 0.031, "steps": 20, "target": None}
    return EvalResults(
        labels=labels, clean_pred=flip(0.1),
        adv_pred={"fgsm": flip(0.4), "pgd20": flip(0.6), "fmn30@norm=l2": np.where(dist <= 0.5, (labels + 2) % 5, labels),
                  "pgd10@target=all": flip(0.5)},
        class_names=list(NAMES),
        extras={"min_dist/fmn30@norm=l2": dist, "target_hits/pgd10@target=all": hits},
        facts={"fgsm": {"family": "fgsm", "norm": "linf", "eps": 0.031}, "pgd20": pgd,
               "fmn30@norm=l2": {"family": "fmn", "norm": "l2", "eps": 0.5},
               "pgd10@target=all": {"family": "pgd", "norm": "linf", "eps": 0.031, "steps": 10, "target": "all"}},
    )


def results_from_accuracies(clean: list[float], attacks: dict[str, list[float]], n: int) -> EvalResults:
    """Per-sample results of ``len(clean)`` classes of ``n`` examples with these per-class accuracies (percent).

    Each accuracy must be a multiple of 100 / n; an attack's must not exceed the
    clean one of its class (the examples it keeps are among those clean keeps).
    """
    k = len(clean)
    labels = np.repeat(np.arange(k), n)
    slot = np.tile(np.arange(n), k)  # position of each example within its class

    def predictions(percent: list[float]) -> np.ndarray:
        hits = np.repeat([round(x * n / 100) for x in percent], n)
        assert np.allclose(hits * 100 / n, np.repeat(percent, n)), "accuracies must be multiples of 100 / n"
        return np.where(slot < hits, labels, (labels + 1) % k)

    for acc in attacks.values():
        assert all(r <= c for r, c in zip(acc, clean)), "an attack cannot keep more than clean"
    names = ["abcdefghijklmnopqrstuvwxyz"[i] for i in range(k)]
    return EvalResults(labels, predictions(clean), {a: predictions(acc) for a, acc in attacks.items()}, names)


def rich_kwargs() -> dict[str, Any]:
    """Everything the evaluate job passes to summarize besides the results (head, superclasses, meta, homing, sanity)."""
    weight = np.random.default_rng(1).normal(size=(5, 4))
    return {"head_weight": weight, "superclasses": GROUPS, "dataset": "toy", "model": "smallcnn",
            "checkpoint": "last", "eps": 0.031,
            "homing": {"attack": "pgd20", "removed": [3], "flipped": 7, "homed": 2, "share": 2 / 7, "missing": []},
            "sanity": {"checks": ["headline-overstated"],
                       "flags": [{"check": "headline-overstated", "scope": "cat", "detail": "d", "suggests": "s"}]}}
