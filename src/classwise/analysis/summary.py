"""A JSON-ready summary of one evaluation: overall and class-wise numbers per attack.

Everything here is a pure function of :class:`classwise.results.EvalResults`.
Numbers are percent (table 2 of the paper); NaN becomes ``None`` so that
``json.dumps`` (strict) accepts the result.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..results import NOT_ATTACKED, EvalResults
from .classwise import WORST, best_worst, classwise_accuracy, largest_gap, overall_accuracy, worst_case


def _num(x: float) -> float | None:
    """Plain float, or None for NaN."""
    x = float(x)
    return None if math.isnan(x) else x


def class_names_of(results: EvalResults) -> list[str]:
    """The K class names; "0".."K-1" when results carry none (K from the largest index)."""
    if results.class_names:
        return list(results.class_names)
    arrays = [results.labels, results.clean_pred, *results.adv_pred.values()]
    k = 1 + max((int(a.max()) for a in arrays if a.size), default=-1)
    return [str(i) for i in range(k)]


def accuracy_block(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """{"overall", "per_class", "best_class", "worst_class", "gap"} for one prediction set.

    labels, pred: (N,). best/worst/gap are None when no class has examples.
    """
    per_class = classwise_accuracy(labels, pred, num_classes)
    block: dict[str, Any] = {
        "overall": _num(overall_accuracy(labels, pred)),
        "per_class": [_num(v) for v in per_class],
        "best_class": None, "worst_class": None, "gap": None,
    }
    if not np.all(np.isnan(per_class)):
        best, worst = best_worst(per_class)
        block |= {"best_class": best, "worst_class": worst, "gap": largest_gap(per_class)}
    return block


def summarize(results: EvalResults, **extra: Any) -> dict[str, Any]:
    """Overall and class-wise clean accuracy and robustness per attack, in percent.

    Returns {"clean": block, "attacks": {name: block}, "headline": ..., "class_names": [...],
    "num_examples": N, **extra}, each block as in :func:`accuracy_block`, the
    headline as in :func:`headline_block` (None without attacks)
    (the paper reports "overall" as "Tot." and marks best/worst per row in table 2).
    """
    names = class_names_of(results)
    k = len(names)
    return {
        "clean": accuracy_block(results.labels, results.clean_pred, k),
        "attacks": {a: _attack_block(results, a, k) for a in results.adv_pred},
        "headline": headline_block(results),
        "class_names": names,
        "num_examples": int(results.labels.shape[0]),
        **extra,
    }


def _attack_block(results: EvalResults, attack: str, k: int) -> dict[str, Any]:
    """Accuracy block of ``attack`` over the examples it was evaluated on (its sample)."""
    m = results.evaluated(attack)
    return accuracy_block(results.labels[m], results.adv_pred[attack][m], k) | {"examples": int(m.sum())}


def _steps(name: str) -> int:
    """The largest integer in an attack name ("pgd-20" -> 20; none -> 0)."""
    return max((int(n) for n in re.findall(r"\d+", name)), default=0)


def protocol_attack(attacks: list[str]) -> str | None:
    """The paper's protocol attack of a run: a PGD attack with the most steps.

    Among names starting with "pgd" (case-insensitive), the one with the largest
    number in its name ("pgd20" over "pgd10"; first on ties), since the paper's
    class-wise analyses (figures 1-6) use PGD. Without one, the first attack
    other than "worst"; None when there is none. Per-example figures (confusion,
    homing, probabilities) are drawn under this attack, which saw every example.
    """
    attacks = [a for a in attacks if a != WORST]
    pgd = [a for a in attacks if a.lower().startswith("pgd")]
    if pgd:
        return max(pgd, key=_steps)
    return attacks[0] if attacks else None


def headline_attack(attacks: list[str]) -> str | None:
    """The entry whose robustness headlines a summary: "worst" when the run has it, else the protocol attack.

    "worst" is the per-example worst case over the whole suite (see
    :func:`suite_worst_case`): the least robust number the run can defend, so
    the headline never rests on one (possibly weak) attack. Without it, see
    :func:`protocol_attack`.
    """
    return WORST if WORST in attacks else protocol_attack(attacks)


def suite_worst_case(results: EvalResults) -> np.ndarray | None:
    """Per-example worst case over every attack, on the examples all of them were evaluated on.

    Returns an (N,) prediction (:func:`~classwise.analysis.classwise.worst_case`;
    ``NOT_ATTACKED`` outside the shared examples), or None with fewer than two
    attacks or no shared example. Class-balanced samples of one seed are
    nested, so the shared examples are the smallest sample.
    """
    attacks = [a for a in results.attacks if a != WORST]
    if len(attacks) < 2:
        return None
    shared = np.all([results.evaluated(a) for a in attacks], axis=0)
    if not shared.any():
        return None
    pred = worst_case(results.labels, results.clean_pred, [results.adv_pred[a] for a in attacks])
    return np.where(shared, pred, NOT_ATTACKED)


def headline_block(results: EvalResults) -> dict[str, Any] | None:
    """What the headline is and how it was made: {"attack", "over", "examples", "protocol", "text"}.

    "over": the attacks the headline takes the worst case of (just itself when
    it is one attack); "protocol": the paper's protocol attack, reported under
    its own name beside it; "text": one line saying so.
    """
    head = headline_attack(results.attacks)
    if head is None:
        return None
    over = [a for a in results.attacks if a != WORST] if head == WORST else [head]
    n = int(results.evaluated(head).sum())
    text = (f"worst case per example over {', '.join(over)} on the {n} examples every attack saw"
            if head == WORST else f"{head} on {n} examples")
    return {"attack": head, "over": over, "examples": n, "protocol": protocol_attack(results.attacks), "text": text}


def sanity_warnings(summary: dict[str, Any]) -> list[str]:
    """Plain-language warnings about a summary: empty classes, robustness above clean.

    Under the evaluation's convention, robustness can never exceed clean accuracy,
    overall or for any class; if it does, the attack or the evaluation is broken.
    """
    names, clean = summary["class_names"], summary["clean"]["per_class"]
    out = [f"class {names[i]!r} has no test examples" for i, v in enumerate(clean) if v is None]
    for attack, block in summary["attacks"].items():
        above = [names[i] for i, (r, c) in enumerate(zip(block["per_class"], clean))
                 if r is not None and c is not None and r > c + 1e-9]
        if above:
            out.append(f"{attack}: robustness above clean accuracy for {', '.join(above)}; "
                       "check the attack and the evaluation")
    return out
