"""Results keyed by what was measured: attack identity, merging, and the worst case per threat.

A result's identity is everything that produced it: the model (checkpoint and
file hash, checked by the caller), the attack's recorded facts (family, norm,
eps, step, steps, restarts, loss, temperature...; :meth:`Attack.facts`) and the
test examples it saw. Here:

* :func:`merge_results` adds new results to a run's earlier ones. Results are
  aligned on test-set indices (``extras["index"]``), so evaluations on other
  examples add rows instead of wiping earlier ones. An identical attack on the
  same examples replaces its earlier self (and says so); any other attack is
  kept beside the earlier ones, under its plain name when it is free, else
  under a name that says how it differs (``pgd5@eps=0.1``, ``pgd20@n=50``).
* :func:`with_worst_cases` adds the per-example worst case over the attacks of
  one threat model (norm, eps), on the examples all of them saw ("worst", or
  ``worst@eps=...`` when a run holds several threat models); it never mixes
  two threat models.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from .analysis import WORST, suite_worst_case
from .errors import ClasswiseError
from .results import NOT_ATTACKED, EvalResults
from .spec import AttackSpec

__all__ = ["EvalResults", "NOT_ATTACKED", "attack_label", "merge_results", "with_worst_cases"]

_NOT_IDENTITY = ("config",)  # facts that describe how an attack was asked for, not what it measured
# Settings at the value a record written before the setting existed implies (``strong`` ran once before it had
# restarts): at that value a fact counts as not recorded.
_UNRECORDED_DEFAULTS = {"restarts": 1}
EXAMPLE_HASH = "example_hash"  # extras: per test example, a hash of its label and image when measured


def attack_label(facts: dict[str, Any], fallback: str) -> str:
    """The plain name of an attack: the spec of its config without eps and step (the run's threat
    model), as :meth:`AttackSpec.format` writes it: "pgd20@restarts=2@target=3@norm=l2".
    Results without a config (``evaluate()``'s) keep ``fallback``, their key."""
    config = facts.get("config")
    if not config:
        return fallback
    return _config_spec(config).replace(eps=None, step_size=None).format()


def _config_spec(config: dict[str, Any]) -> AttackSpec:
    """The spec of a recorded attack config (``dataclasses.asdict`` of an AttackConfig)."""
    restarts, norm = int(config.get("restarts", 1)), config.get("norm", "linf")
    return AttackSpec.parse(config["name"]).replace(
        eps=config.get("eps"), step_size=config.get("step_size"), restarts=restarts if restarts > 1 else None,
        norm=norm if norm != "linf" else None, options=config.get("options") or {})


def _examples(results: EvalResults, key: str) -> np.ndarray:
    """Test-set indices (sorted) of the examples ``key`` was evaluated on."""
    return _index(results)[results.evaluated(key)]


def _index(results: EvalResults) -> np.ndarray:
    return results.extras.get("index", np.arange(len(results.labels)))


def _identity(results: EvalResults, key: str) -> tuple[str, bytes]:
    """The facts (less how it was asked for, and settings at their unrecorded default) and the examples."""
    facts = {k: v for k, v in results.facts.get(key, {"name": key}).items()
             if k not in _NOT_IDENTITY and not (k in _UNRECORDED_DEFAULTS and v == _UNRECORDED_DEFAULTS[k])}
    return json.dumps(facts, sort_keys=True, default=str), _examples(results, key).tobytes()


def _expand(values: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """A per-sample array placed at ``positions`` of a length-``n`` array (missing rows: not attacked / NaN / False)."""
    fill: Any = NOT_ATTACKED if values.dtype.kind in "iu" else (False if values.dtype.kind == "b" else np.nan)
    out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
    out[positions] = values
    return out


def _aligned(results: EvalResults, union: np.ndarray) -> EvalResults:
    """``results`` on the test-set indices ``union`` (a superset of its own)."""
    index = _index(results)
    if np.array_equal(index, union):
        return results
    pos, n = np.searchsorted(union, index), len(union)
    labels = np.full(n, NOT_ATTACKED, dtype=np.int64)
    labels[pos] = results.labels
    extras = {k: _expand(v, pos, n) for k, v in results.extras.items() if k != "index"} | {"index": union}
    return EvalResults(labels, _expand(results.clean_pred, pos, n), {k: _expand(v, pos, n) for k, v in results.adv_pred.items()},
                       results.class_names, None, {}, extras, dict(results.facts))


def _combine(old: EvalResults, new: EvalResults) -> tuple[EvalResults, EvalResults]:
    """Both results on the union of their test-set indices; labels and clean predictions filled from either."""
    union = np.union1d(_index(old), _index(new))
    a, b = _aligned(old, union), _aligned(new, union)
    for field in ("labels", "clean_pred"):
        x, y = getattr(a, field), getattr(b, field)
        filled = np.where(x == NOT_ATTACKED, y, x)
        a, b = dataclasses.replace(a, **{field: filled}), dataclasses.replace(b, **{field: filled})
    if EXAMPLE_HASH in a.extras and EXAMPLE_HASH in b.extras:  # what each example was, from whichever measured it
        x, y = a.extras[EXAMPLE_HASH], b.extras[EXAMPLE_HASH]
        filled = np.where(y == NOT_ATTACKED, x, y)
        a, b = (dataclasses.replace(r, extras=r.extras | {EXAMPLE_HASH: filled}) for r in (a, b))
    probs = next((r.clean_probs for r, s in ((old, a), (new, b)) if np.array_equal(_index(r), union)), None)
    return dataclasses.replace(a, clean_probs=probs), dataclasses.replace(b, clean_probs=probs)


def _free_key(label: str, facts: dict[str, Any], examples: np.ndarray, taken: EvalResults) -> str:
    """``label``, or ``label`` with the settings that tell it apart when another result holds that name.

    The key is a spec (:class:`AttackSpec`) that re-creates the attack: ``label``
    with eps and step where they differ from the other result's, the norm where
    it differs, and ``n=`` (the number of examples) where the examples differ.
    """
    if label not in taken.adv_pred:
        return label
    other = taken.facts.get(label, {})
    mine, theirs = facts.get("config") or facts, other.get("config") or other
    spec, changes = AttackSpec.parse(label), dict[str, Any]()
    for key in ("eps", "step_size"):
        if mine.get(key) != theirs.get(key) and mine.get(key) is not None:
            changes[key] = float(mine[key])
    if facts.get("norm") != other.get("norm"):
        changes["norm"] = facts.get("norm")
    if not np.array_equal(examples, _examples(taken, label)):
        changes["examples"] = len(examples)
    key, i = spec.replace(**changes).format() if changes else f"{label}@2", 2
    while key in taken.adv_pred:
        i += 1
        key = f"{label}@{i}"
    return key


def merge_results(old: EvalResults | None, old_meta: dict[str, Any], new: EvalResults,
                  model: dict[str, str]) -> tuple[EvalResults, list[str]]:
    """``new`` (keyed by attack spec text) added to ``old`` (a run's saved results); returns (merged, messages).

    ``model`` ({"checkpoint", "sha256"}) must be the model ``old`` was measured on:
    another checkpoint is refused (two models never share results); the same
    checkpoint with other weights (trained further) replaces the old results.
    """
    messages: list[str] = []
    if old is not None and old_meta.get("checkpoint", model["checkpoint"]) != model["checkpoint"]:
        raise ClasswiseError(f"this run's results are of checkpoint '{old_meta['checkpoint']}', not "
                             f"'{model['checkpoint']}': two models never share results.npz; move results.npz and "
                             "meta.json away first, or evaluate a copy of the run")
    if old is not None and old_meta.get("sha256") not in (None, model["sha256"]):
        messages.append(f"checkpoint '{model['checkpoint']}' changed since the last evaluation (trained further?): "
                        "its earlier results are replaced")
        old = None
    old = old if old is not None else dataclasses.replace(new, adv_pred={}, adv_probs={}, facts={})
    merged, incoming = _combine(old, new)
    for spec, pred in incoming.adv_pred.items():
        merged, message = _put(merged, incoming, spec, pred)
        messages += [message] if message else []
    return merged, messages


def _put(merged: EvalResults, incoming: EvalResults, spec: str, pred: np.ndarray) -> tuple[EvalResults, str | None]:
    """Add one attack's results: replace an identical earlier result, else keep both."""
    ident = _identity(incoming, spec)
    same = [k for k in merged.adv_pred if _identity(merged, k) == ident]
    facts = incoming.facts.get(spec, {})
    key = same[0] if same else _free_key(attack_label(facts, spec), facts, _examples(incoming, spec), merged)
    adv, probs = dict(merged.adv_pred), dict(merged.adv_probs)
    adv[key] = pred
    probs.pop(key, None)
    if spec in incoming.adv_probs and incoming.clean_probs is not None:
        probs[key] = incoming.adv_probs[spec]
    # "<kind>/<spec>" -> "<kind>/<key>"; the spec itself may hold a "/" (eps=8/255), so cut it off by its length
    records = {f"{k[:-len(spec) - 1]}/{key}": v for k, v in incoming.extras.items() if k.endswith(f"/{spec}")}
    shared = {k: v for k, v in incoming.extras.items() if "/" not in k and k != "index"}  # e.g. zero_grad
    merged = dataclasses.replace(merged, adv_pred=adv, adv_probs=probs, facts=merged.facts | {key: facts},
                                 extras=merged.extras | shared | records)
    return merged, (f"replaced the earlier results of {key} (same attack, same examples)" if same else None)


def _threat(facts: dict[str, Any]) -> tuple[str, float]:
    return str(facts.get("norm", "linf")), float(facts.get("eps", float("nan")))


def _threat_groups(results: EvalResults) -> dict[tuple[str, float], list[str]]:
    """Attacks (not worst cases) by threat model (norm, eps), for threats with at least two attacks."""
    groups: dict[tuple[str, float], list[str]] = {}
    for key in results.attacks:
        facts = results.facts.get(key, {})
        if facts.get("family") != WORST:
            groups.setdefault(_threat(facts), []).append(key)
    return {threat: keys for threat, keys in groups.items() if len(keys) >= 2}


def with_worst_cases(results: EvalResults) -> EvalResults:
    """Add (or refresh) the per-example worst case over each threat model's attacks.

    For each (norm, eps) with at least two attacks: the worst case over all of
    them, on the examples every one of them saw (class-balanced samples of one
    seed are nested, so these are the smallest sample; ``NOT_ATTACKED``
    elsewhere). A cascade's worst case (``--cascade``: its facts name the attacks
    it is ``over``) is always kept beside it, never replaced by one over other
    attacks; a computed worst case whose threat model has fewer attacks now is kept.
    Worst cases come last, named by :func:`_worst_names`.
    """
    fresh = _threat_groups(results)
    adv = {k: v for k, v in results.adv_pred.items() if results.facts.get(k, {}).get("family") != WORST}
    kept = {k: results.facts[k] for k in results.adv_pred if k not in adv
            and (results.facts[k].get("cascade") or _threat(results.facts[k]) not in fresh)}
    worst: list[tuple[np.ndarray, dict[str, Any]]] = []
    for (norm, eps), keys in fresh.items():
        pred = suite_worst_case(results, keys)
        if pred is not None:
            worst.append((pred, {"family": WORST, "cascade": False, "over": keys, "norm": norm,
                                 "eps": eps, "examples": int((pred != NOT_ATTACKED).sum())}))
    worst += [(results.adv_pred[k], f) for k, f in kept.items()]
    names = _worst_names([f for _, f in worst])
    adv |= {name: pred for name, (pred, _) in zip(names, worst)}
    facts = {k: results.facts[k] for k in results.adv_pred if k in adv and k not in kept} | {
        name: f for name, (_, f) in zip(names, worst)}
    return dataclasses.replace(results, adv_pred=adv, facts=facts,
                               adv_probs={k: v for k, v in results.adv_probs.items() if k in adv})


def _worst_names(facts: Iterable[dict[str, Any]]) -> list[str]:
    """"worst" for a single threat model, else worst@eps=... (with the norm when norms differ); where a
    threat model has several worst cases, its cascades are told apart by ``@cascade=1``, ``@cascade=2``..."""
    facts = list(facts)
    norms = {f.get("norm") for f in facts}
    base = [WORST] * len(facts) if len({_threat(f) for f in facts}) <= 1 else [
        f"{WORST}@" + (f"norm={f.get('norm')}@" if len(norms) > 1 else "") + f"eps={_worst_eps(f):g}" for f in facts]
    names: list[str] = []
    count = {b: base.count(b) for b in base}
    for b, f in zip(base, facts):
        if count[b] > 1 and f.get("cascade"):
            names.append(f"{b}@cascade={sum(n.startswith(b + '@cascade=') for n in names) + 1}")
        else:
            names.append(b)
    return names


def _worst_eps(facts: dict[str, Any]) -> float:
    """The eps of a worst case's facts; one without it cannot be named next to others."""
    eps = facts.get("eps")
    if eps is None:
        raise ClasswiseError(f"a worst case without its eps cannot be named next to other worst cases: {facts}")
    return float(eps)
