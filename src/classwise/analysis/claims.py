"""The class-wise claims of a report, each tested rather than eyeballed (JSON-ready).

Pure functions of :class:`classwise.results.EvalResults` built on
:mod:`classwise.analysis.stats`:

- :func:`paired_block`: attack vs a reference attack on the same examples, per
  class (tables 3, 4 and 6 of the paper), with exact McNemar tests;
- :func:`weak_hurt_more_claims`: "stronger attacks hurt the weak classes more"
  (section 3.3), a Spearman rho of robustness vs drop per pair of attacks;
- :func:`norm_claims`: figure 4's weight norm vs robustness, and vs clean
  accuracy, Spearman with a bootstrap CI over test examples;
- :func:`weakest_explained`: for the weakest classes, where their flips go
  (top confound classes, share inside the superclass) and the gap to clean.

NaN becomes None so that ``json.dumps`` accepts every result.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..results import EvalResults
from .classwise import classwise_accuracy, confusion_counts, weight_norms
from .facts import is_paper_pgd20
from .stats import (
    classwise_interval,
    mcnemar_exact,
    paired_classwise,
    spearman_over_examples,
    weak_hurt_more_counts,
)


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _nums(v: np.ndarray) -> list[float | None]:
    return [_num(x) for x in np.asarray(v, dtype=np.float64)]


def difference_reference(results: EvalResults, head: str | None) -> str | None:
    """The reference of the difference table: plain PGD-20 (the paper's, by its recorded facts), else ``head``."""
    return next((a for a in results.attacks if is_paper_pgd20(results, a)), head)


def _both(results: EvalResults, a: str | None, b: str) -> np.ndarray:
    """(N,) bool: examples evaluated by both attacks (``a`` None = clean, every example)."""
    m = results.evaluated(b)
    return m if a is None else m & results.evaluated(a)


def paired_block(results: EvalResults, reference: str | None, attack: str, alpha: float = 0.05) -> dict[str, Any]:
    """``attack`` minus ``reference`` (None = clean) on the examples both saw, per class and overall.

    Returns {"n", "diff" (percentage points, negative = ``attack`` stronger),
    "p" (exact McNemar), "p_holm" (Holm over classes), "significant",
    "overall": {"diff", "p"}, "alpha"}. Lists are (K,).
    """
    m = _both(results, reference, attack)
    labels = results.labels[m]
    ref = results.correct(reference)[m]
    att = results.correct(attack)[m]
    cmp = paired_classwise(labels, ref, att, results.num_classes, alpha)
    only_ref, only_att = int((ref & ~att).sum()), int((att & ~ref).sum())
    overall = _num(100.0 * (att.mean() - ref.mean())) if m.any() else None
    return {"n": cmp.n.tolist(), "diff": _nums(cmp.diff), "p": _nums(cmp.p), "p_holm": _nums(cmp.p_holm),
            "significant": cmp.significant.tolist(), "alpha": alpha,
            "overall": {"diff": overall, "p": mcnemar_exact(only_ref, only_att)}}


def paired_claims(results: EvalResults, reference: str | None) -> dict[str, Any]:
    """{"reference", "attacks": {attack: :func:`paired_block`}} for every other attack."""
    if reference is None:
        return {"reference": None, "attacks": {}}
    return {"reference": reference,
            "attacks": {a: paired_block(results, reference, a) for a in results.attacks if a != reference}}


def weak_hurt_more_claims(results: EvalResults, reference: str | None, seed: int = 0) -> list[dict[str, Any]]:
    """Section 3.3 per attack vs ``reference``: Spearman of the weaker's robustness and the drop.

    For each other attack, on the examples both saw, the weaker attack is the
    one with the higher overall robustness; rho < 0 with small p says the
    stronger attack gains most on the classes that were already weak.
    """
    out = []
    for attack in results.attacks:
        if reference is None or attack == reference:
            continue
        m = _both(results, reference, attack)
        ra, rr = results.correct(attack)[m].mean(), results.correct(reference)[m].mean()
        weak, strong = (attack, reference) if ra >= rr else (reference, attack)
        labels = results.labels[m]
        n = np.bincount(labels, minlength=results.num_classes)
        robust = {a: np.bincount(labels[results.correct(a)[m]], minlength=results.num_classes) for a in (weak, strong)}
        corr = weak_hurt_more_counts(robust[weak], robust[strong], n, seed=seed)
        out.append({"weaker": weak, "stronger": strong} | corr.to_json())
    return out


def norm_claims(results: EvalResults, head: str, weight: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Figure 4: Spearman of per-class weight norm vs robustness under ``head`` and vs clean accuracy.

    weight: (K, D) classifier weight. Both intervals resample test examples
    (:func:`classwise.analysis.stats.spearman_over_examples`) with ``seed``.
    """
    norms = weight_norms(weight)
    m = results.evaluated(head)
    robust = classwise_interval(results.labels[m], results.correct(head)[m], results.num_classes)
    clean = classwise_interval(results.labels, results.correct(), results.num_classes)
    return {"attack": head, "norms": norms.tolist(),
            "robust": spearman_over_examples(norms, robust.count, robust.n, seed=seed).to_json(),
            "clean": spearman_over_examples(norms, clean.count, clean.n, seed=seed).to_json()}


def superclass_of(groups: dict[str, list[int]] | None, k: int) -> np.ndarray | None:
    """(K,) superclass index of each class (-1: in none), or None without superclasses."""
    if not groups:
        return None
    of = np.full(k, -1)
    for g, members in enumerate(groups.values()):
        of[list(members)] = g
    return of


def weakest_explained(results: EvalResults, head: str, superclasses: dict[str, list[int]] | None = None,
                      count: int = 3, top: int = 3) -> list[dict[str, Any]]:
    """Why the ``count`` weakest classes under ``head`` are weak, weakest first.

    Per class: robustness and its interval, clean accuracy, gap to clean
    (percentage points), its ``top`` confound classes with their share of the
    class's flips (examples of the class predicted as another class under
    attack, as in figure 3a), and the share of flips staying inside its
    superclass (None without superclasses, or when the class is its superclass's only member).
    """
    k, m = results.num_classes, results.evaluated(head)
    robust = classwise_interval(results.labels[m], results.correct(head)[m], k)
    clean = classwise_accuracy(results.labels, results.clean_pred, k)
    flips = confusion_counts(results.labels[m], results.adv_pred[head][m], k)
    np.fill_diagonal(flips, 0)
    order = np.argsort(np.nan_to_num(robust.percent, nan=np.inf), kind="stable")[:count]
    sup = superclass_of(superclasses, k)
    return [_explain(int(i), robust, clean, flips[i], sup, top) for i in order if robust.n[i] > 0]


def _explain(i: int, robust, clean: np.ndarray, flips: np.ndarray, sup: np.ndarray | None,
             top: int) -> dict[str, Any]:
    total = int(flips.sum())
    to = [int(j) for j in np.argsort(-flips, kind="stable")[:top] if flips[j] > 0]
    within = None
    if sup is not None and total > 0:
        same = sup == sup[i]
        if int(same.sum()) >= 2:  # a one-class superclass keeps no flip inside
            within = float(flips[same].sum() / total)
    return {"class": i, "robust": _num(robust.percent[i]), "ci95": _nums(robust.ci[i]), "n": int(robust.n[i]),
            "clean": _num(clean[i]), "gap_to_clean": _num(clean[i] - robust.percent[i]), "flips": total,
            "confounds": [{"class": j, "share": float(flips[j] / total)} for j in to],
            "within_superclass": within}
