"""An attack's identity as analyses read it: the recorded facts, never a parsed name.

Evaluations record each attack's facts with its results (:meth:`classwise.attacks.Attack.facts`,
``EvalResults.facts``). Results built by hand carry none; for them the registry's
spelling of a name ("pgd20", "pgd20-r5", "cw-margin40", "fgsm-rs") is read once, here.
"""

from __future__ import annotations

import re
from typing import Any

from ..results import EvalResults

ITERATIVE = ("pgd", "cw-margin")  # families whose budget is steps x restarts
SINGLE_STEP = ("fgsm", "fgsm-rs")  # FGSM and FGSM with a random start (both record family "fgsm")
_SPELLING = re.compile(r"(?P<family>[a-z]+(?:-[a-z]+)*?)(?P<steps>\d+)?(?:-r(?P<restarts>\d+))?")


def attack_facts(results: EvalResults, name: str) -> dict[str, Any]:
    """The recorded facts of attack ``name``; for results without them, what its registry spelling says."""
    facts = results.facts.get(name)
    if facts:
        return facts
    match = _SPELLING.fullmatch(name)
    if match is None:
        return {"family": name}
    out: dict[str, Any] = {"family": match["family"], "restarts": int(match["restarts"] or 1)}
    return out | ({"steps": int(match["steps"])} if match["steps"] else {})


def budget(results: EvalResults, name: str) -> tuple[tuple, int, int] | None:
    """(what must match to compare budgets, steps, restarts) of an iterative attack; None for others.

    Two runs compare when family, norm, eps, loss, temperature and target agree.
    """
    f = attack_facts(results, name)
    if f.get("family") not in ITERATIVE or "steps" not in f:
        return None
    same = tuple(f.get(k) for k in ("family", "norm", "eps", "loss", "temperature", "target"))
    return same, int(f["steps"]), int(f.get("restarts", 1))


def is_single_step(results: EvalResults, name: str) -> bool:
    return attack_facts(results, name).get("family") in SINGLE_STEP


def is_paper_pgd20(results: EvalResults, name: str) -> bool:
    """Plain PGD-20 on the cross-entropy (the paper's reference attack for tables 3, 4 and 6)."""
    f = attack_facts(results, name)
    return (f.get("family") == "pgd" and f.get("steps") == 20 and f.get("restarts", 1) == 1
            and f.get("loss", "ce") == "ce" and f.get("target") is None and f.get("norm", "linf") == "linf")
