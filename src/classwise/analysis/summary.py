"""A JSON-ready summary of one evaluation: overall and class-wise numbers per attack.

Everything here is a pure function of :class:`classwise.results.EvalResults`.
Numbers are percent (table 2 of the paper); NaN becomes ``None`` so that
``json.dumps`` (strict) accepts the result.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import numpy as np

from ..results import NOT_ATTACKED, EvalResults
from .claims import difference_reference, norm_claims, paired_claims, weak_hurt_more_claims, weakest_explained
from .fairness import class_spread, worst_class
from .classwise import WORST, best_worst, classwise_accuracy, largest_gap, overall_accuracy, worst_case
from .stats import classwise_interval, rank_call, wilson_interval
from .curves import compare_norms, curves_summary
from .schema import Summary, decode
from .targeted import targeted_summary


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
    """One prediction set's numbers with their uncertainty (table 2 row).

    labels, pred: (N,). Returns {"overall", "overall_ci95" [lo, hi], "per_class",
    "n", "count", "ci95" [[lo, hi], ...] (95% Wilson, percent), "best_class",
    "worst_class", "gap", "best_call", "worst_call"}; a call is {"class",
    "significant", "tied_with": [class indices]} (:func:`classwise.analysis.stats.rank_call`).
    best/worst/gap/calls are None when no class has examples; best/worst and the
    calls are None also when every class has the same value (gap 0: all tied).
    """
    per_class = classwise_accuracy(labels, pred, num_classes)
    ci = classwise_interval(labels, pred == labels, num_classes)
    hits = int(np.sum(pred == labels))
    block: dict[str, Any] = {
        "overall": _num(overall_accuracy(labels, pred)),
        "overall_ci95": [_num(100.0 * v) for v in wilson_interval(hits, int(labels.size))],
        "per_class": [_num(v) for v in per_class],
        "n": ci.n.tolist(), "count": ci.count.tolist(), "ci95": [[_num(lo), _num(hi)] for lo, hi in ci.ci],
        "best_class": None, "worst_class": None, "gap": None, "best_call": None, "worst_call": None,
    }
    if np.all(np.isnan(per_class)):
        return block
    block |= {"gap": largest_gap(per_class), **_fairness(ci.count, ci.n)}
    if block["gap"] > 0:  # all classes equal: none is best or worst (not one class marked as both)
        best, worst = best_worst(per_class)
        block |= {"best_class": best, "worst_class": worst,
                  "best_call": _call(per_class, ci.ci, "best"), "worst_call": _call(per_class, ci.ci, "worst")}
    return block


def _fairness(count: np.ndarray, n: np.ndarray) -> dict[str, Any]:
    """Worst-class interval and spread over classes, from integer counts (K,) (:mod:`.fairness`)."""
    w, spread = worst_class(count, n), class_spread(count, n)
    if w is None or spread is None:  # no class has examples (the caller checks; kept for the types)
        return {}
    return {"worst_class_interval": {"percent": w.percent, "low": w.low, "high": w.high, "classes": list(w.classes),
                                     "candidates": list(w.candidates), "significant": w.significant,
                                     "confidence": w.confidence},
            "spread": {"std": spread.std, "nsd": _num(spread.nsd), "worst_k_mean": spread.worst_k_mean,
                       "k": spread.k}}


def _call(per_class: np.ndarray, ci: np.ndarray, which: str) -> dict[str, Any]:
    call = rank_call(per_class, ci, which)
    return {"class": call.index, "significant": call.significant, "tied_with": list(call.tied_with)}


def summarize(results: EvalResults, *, headline: str | None = None, head_weight: np.ndarray | None = None,
              superclasses: dict[str, list[int]] | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON form (summary.json) of :func:`build_summary`: ``build_summary(...).to_dict()``."""
    return build_summary(results, headline=headline, head_weight=head_weight, superclasses=superclasses,
                         **extra).to_dict()


def build_summary(results: EvalResults, *, headline: str | None = None, head_weight: np.ndarray | None = None,
                  superclasses: dict[str, list[int]] | None = None, **extra: Any) -> Summary:
    """Overall and class-wise clean accuracy and robustness per attack, in percent, with claims.

    A :class:`~classwise.analysis.schema.Summary`; as JSON, {"clean": block, "attacks": {name: block}, "class_names": [...],
    "num_examples": N, "headline": attack, "headline_basis": {...}, "protocol": attack,
    "claims": {...}, "superclasses", **extra},
    each block as in :func:`accuracy_block` (the paper reports "overall" as "Tot."
    and marks best/worst per row in table 2). "claims" holds the tested claims of
    :mod:`classwise.analysis.claims`: "paired" (each attack vs the reference,
    exact McNemar per class), "weak_hurt_more" (section 3.3), "weight_norm"
    (figure 4, with ``head_weight`` (K, D)) and "weakest" (why the weakest
    classes under the headline attack are weak). ``headline`` defaults to
    :func:`headline_attack` (the worst case over the suite when the run has
    it), "headline_basis" says what it is made of (:func:`headline_basis`);
    "protocol" is the paper's protocol attack (:func:`protocol_attack`),
    reported under its own name, the reference of the paired claims and the
    attack of the weight-norm claim (``headline`` overrides it too).
    Where the results hold them, also "curves" (per minimum-norm attack:
    robustness over eps per class, median distances, eps at 50%; see
    :func:`classwise.analysis.curves.distance_curves`), "targeted" (per
    targeted attack: the class-by-class success matrix) and "norms" (L-inf
    against L2 per class, with Spearman's rho), then "schema_version".
    Other keyword arguments (``extra``) become entries of their own.
    """
    return decode(Summary, _summary_json(results, headline, head_weight, superclasses, extra))


def _summary_json(results: EvalResults, headline: str | None, head_weight: np.ndarray | None,
                  superclasses: dict[str, list[int]] | None, extra: dict[str, Any]) -> dict[str, Any]:
    names = class_names_of(results)
    k = len(names)
    if head_weight is not None:
        head_weight = np.asarray(head_weight)
        if head_weight.ndim != 2 or head_weight.shape[0] != k:
            raise ValueError(f"head_weight must be (K={k}, D) like nn.Linear.weight, got {head_weight.shape}")
    head = headline or headline_attack(results.attacks)
    if head is not None and head not in results.adv_pred:
        raise ValueError(f"headline attack {head!r} not among {results.attacks}")
    protocol = headline or protocol_attack(results.attacks, results.facts)
    return {
        "clean": accuracy_block(results.labels, results.clean_pred, k),
        "attacks": {a: _attack_block(results, a, k) for a in results.adv_pred},
        "class_names": names,
        "num_examples": int(results.labels.shape[0]),
        "headline": head,
        "headline_basis": headline_basis(results, head),
        "protocol": protocol,
        "claims": _claims(results, names, head, protocol, head_weight, superclasses),
        "superclasses": superclasses,
        **_threat_blocks(results),
        **extra,
    }


def _claims(results: EvalResults, names: list[str], head: str | None, protocol: str | None,
            head_weight: np.ndarray | None, superclasses: dict[str, list[int]] | None) -> dict[str, Any]:
    results = replace(results, class_names=names)
    ref = difference_reference(results, protocol)
    out: dict[str, Any] = {"paired": paired_claims(results, ref), "weak_hurt_more": weak_hurt_more_claims(results, ref),
                           "weight_norm": None, "weakest": []}
    if head is not None:
        out["weakest"] = weakest_explained(results, head, superclasses, count=min(3, max(1, len(names) // 3)))
        if head_weight is not None:
            if protocol is None:  # a run with a headline attack has attacks, so a protocol attack
                raise ValueError(f"no protocol attack among {results.attacks} for the weight-norm claims")
            out["weight_norm"] = norm_claims(results, protocol, head_weight)
    return out


def _threat_blocks(results: EvalResults) -> dict[str, Any]:
    """The "curves", "targeted" and "norms" entries, each only where the results have it."""
    blocks = {"curves": curves_summary(results), "targeted": targeted_summary(results),
              "norms": compare_norms(results, headline_attack)}
    return {k: v for k, v in blocks.items() if v}


def _attack_block(results: EvalResults, attack: str, k: int) -> dict[str, Any]:
    """Accuracy block of ``attack`` over the examples it was evaluated on (its sample)."""
    m = results.evaluated(attack)
    facts = results.facts.get(attack, {})
    threat = {key: facts[key] for key in ("norm", "eps") if key in facts}
    cost = attack_cost(results, attack)
    return (accuracy_block(results.labels[m], results.adv_pred[attack][m], k) | {"examples": int(m.sum())} | threat
            | ({"cost": cost} if cost else {}))


def attack_cost(results: EvalResults, attack: str) -> dict[str, float] | None:
    """What ``attack`` spent (:meth:`EvalResults.cost`); a worst case: the sum over the attacks it covers,
    per example of the examples it covers. None when some covered attack has no cost records."""
    if not _is_worst(attack):
        return results.cost(attack)
    over = results.facts.get(attack, {}).get("over") or [a for a in results.attacks if not _is_worst(a)]
    costs = [results.cost(a) for a in over]
    if not costs or any(c is None for c in costs):
        return None
    n = int(results.evaluated(attack).sum())
    f, b = (int(sum(c[key] for c in costs if c)) for key in ("forwards", "backwards"))
    return {"forwards": f, "backwards": b, "examples": n, "backwards_per_example": b / n if n else 0.0}


def _steps(name: str) -> int:
    """The largest integer in an attack name ("pgd-20" -> 20; none -> 0)."""
    return max((int(n) for n in re.findall(r"\d+", name)), default=0)


def protocol_attack(attacks: list[str], facts: dict[str, dict] | None = None) -> str | None:
    """The paper's protocol attack of a run: untargeted PGD with the most steps.

    With the attacks' recorded ``facts`` (``EvalResults.facts``): among attacks of
    family "pgd" without a target, on the threat model (norm, eps) of the first
    such attack, the one with the most steps (first on ties). Without facts
    (names only, e.g. from a summary), names starting with "pgd" are read the
    registry's way ("pgd20" over "pgd10"). Without a PGD attack, the first
    attack other than a worst case; "worst" when it is alone (a cascade); None
    without attacks. Per-example figures (confusion, homing, probabilities) are
    drawn under this attack, which saw every example.
    """
    others = [a for a in attacks if not _is_worst(a)]
    if facts:
        pgd = [a for a in others if facts.get(a, {}).get("family") == "pgd" and facts[a].get("target") is None]
        pgd = [a for a in pgd if _threat_of(facts[a]) == _threat_of(facts[pgd[0]])] if pgd else []
        steps = lambda a: int(facts[a].get("steps", 0))  # noqa: E731
    else:
        pgd = [a for a in others if a.lower().startswith("pgd")]
        steps = _steps
    if pgd:
        return max(pgd, key=steps)
    return others[0] if others else next((a for a in attacks if _is_worst(a)), None)


def _is_worst(name: str) -> bool:
    """"worst", or "worst@eps=..." when a run holds several threat models."""
    return name == WORST or name.startswith(WORST + "@")


def _threat_of(facts: dict) -> tuple:
    return facts.get("norm", "linf"), facts.get("eps")


def headline_attack(attacks: list[str]) -> str | None:
    """The entry whose robustness headlines a summary: the worst case when the run has one, else the protocol attack.

    The worst case is per example over the whole suite of one threat model
    (:func:`classwise.identity.with_worst_cases`; the first one, that of the
    run's first threat model, when there are several): the least robust number
    the run can defend, so the headline never rests on one (possibly weak)
    attack. Without it, see :func:`protocol_attack`.
    """
    return next((a for a in attacks if _is_worst(a)), None) or protocol_attack(attacks)


def suite_worst_case(results: EvalResults, attacks: list[str] | None = None) -> np.ndarray | None:
    """Per-example worst case over ``attacks`` (default: every attack), on the examples all of them saw.

    Returns an (N,) prediction (:func:`~classwise.analysis.classwise.worst_case`;
    ``NOT_ATTACKED`` outside the shared examples), or None with fewer than two
    attacks or no shared example. Class-balanced samples of one seed are
    nested, so the shared examples are the smallest sample.
    """
    attacks = [a for a in (results.attacks if attacks is None else attacks) if not _is_worst(a)]
    if len(attacks) < 2:
        return None
    shared = np.all([results.evaluated(a) for a in attacks], axis=0)
    if not shared.any():
        return None
    pred = worst_case(results.labels, results.clean_pred, [results.adv_pred[a] for a in attacks])
    return np.where(shared, pred, NOT_ATTACKED)


def headline_basis(results: EvalResults, head: str | None = None) -> dict[str, Any] | None:
    """What the headline (``head``, default :func:`headline_attack`) is made of: {"attack", "over", "examples", "text"}.

    "over": the attacks the headline takes the worst case of (just itself when
    it is one attack); "text": one line saying so.
    """
    head = head or headline_attack(results.attacks)
    if head is None:
        return None
    recorded = results.facts.get(head, {}).get("over")
    over = (recorded or [a for a in results.attacks if not _is_worst(a)]) if _is_worst(head) else [head]
    n = int(results.evaluated(head).sum())
    text = (f"worst case per example over {', '.join(over)} on the {n} examples every attack saw"
            if _is_worst(head) else f"{head} on {n} examples")
    return {"attack": head, "over": over, "examples": n, "text": text}


def sanity_warnings(summary: Summary | dict[str, Any]) -> list[str]:
    """Plain-language warnings about a summary (typed, or its JSON form): empty classes, robustness above clean.

    Under the evaluation's convention, robustness can never exceed clean accuracy,
    overall or for any class; if it does, the attack or the evaluation is broken.
    """
    s = summary if isinstance(summary, Summary) else Summary.from_dict(summary)
    names, clean = s.class_names, s.clean.per_class
    out = [f"class {names[i]!r} has no test examples" for i, v in enumerate(clean) if v is None]
    for attack, block in s.attacks.items():
        above = [names[i] for i, (r, c) in enumerate(zip(block.per_class, clean))
                 if r is not None and c is not None and r > c + 1e-9]
        if above:
            out.append(f"{attack}: robustness above clean accuracy for {', '.join(above)}; "
                       "check the attack and the evaluation")
    return out
