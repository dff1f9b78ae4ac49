"""An attack's identity as analyses read it: the recorded facts, never a parsed name.

Evaluations record each attack's facts with its results (:meth:`classwise.attacks.Attack.facts`,
``EvalResults.facts``); analyses read family, steps, restarts, norm and eps from them. Results
built by hand carry none; for them the key is read as an attack spec in the one grammar of
:class:`classwise.spec.AttackSpec` ("pgd20", "pgd20@restarts=5", "pgd5@norm=l2"), here and
nowhere else.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import ClasswiseError
from ..results import EvalResults
from ..spec import AttackSpec

ITERATIVE = ("pgd", "cw-margin")  # families whose budget is steps x restarts
LEGACY_RESTARTS = re.compile(r"(.+\d)-r(\d+)")  # "pgd20-r5": how results before the spec grammar wrote restarts
SINGLE_STEP = ("fgsm", "fgsm-rs")  # FGSM and FGSM with a random start (both record family "fgsm")


def attack_facts(results: EvalResults, name: str) -> dict[str, Any]:
    """The recorded facts of attack ``name``; for results without them, what its spec says."""
    facts = results.facts.get(name)
    return facts if facts else spec_facts(name)


def spec_facts(text: str) -> dict[str, Any]:
    """The facts a spec states: family, steps (of "pgd20"), restarts, norm, eps, step and options.

    "pgd20@restarts=5@norm=l2" -> {"family": "pgd", "steps": 20, "restarts": 5, "norm": "l2"}; a key
    of older results, "pgd20-r5@norm=l2", reads the same.
    Text that is no spec gives {"family": text}.
    """
    try:
        spec = AttackSpec.parse(text)
    except ClasswiseError:
        return {"family": text}
    legacy = LEGACY_RESTARTS.fullmatch(spec.name)
    if legacy and spec.restarts is None:  # a key of older results: "pgd20-r5" is pgd20@restarts=5
        spec = spec.replace(name=legacy.group(1), restarts=int(legacy.group(2)))
    facts: dict[str, Any] = {"family": spec.base, "restarts": spec.restarts or 1, **spec.option_dict}
    facts |= {"steps": int(spec.param)} if spec.param and spec.param.isdigit() and ":" not in spec.name else {}
    given = {"norm": spec.norm, "eps": spec.eps, "step_size": spec.step_size}
    return facts | {k: v for k, v in given.items() if v is not None}


def norm_of(results: EvalResults, name: str) -> str:
    """The threat model ("linf" or "l2") attack ``name`` ran under, from its facts."""
    return str(attack_facts(results, name).get("norm") or "linf")


def threat_model(results: EvalResults, name: str) -> tuple[str, float | None]:
    """(norm, eps) attack ``name`` ran under, from its facts; eps None when they do not say."""
    eps = attack_facts(results, name).get("eps")
    return norm_of(results, name), None if eps is None else float(eps)


def same_threat_model(results: EvalResults, a: str, b: str) -> bool:
    """Whether attacks ``a`` and ``b`` ran under one threat model: the same norm and eps.

    Only such attacks are compared (a paired test of an L2 attack at eps 0.5
    against an L-inf one at 8/255 compares budgets, not attacks). An eps the
    facts do not state (results built by hand) matches any eps of the same norm.
    """
    (na, ea), (nb, eb) = threat_model(results, a), threat_model(results, b)
    return na == nb and (ea is None or eb is None or math.isclose(ea, eb, rel_tol=1e-9, abs_tol=1e-12))


def is_targeted(results: EvalResults, name: str) -> bool:
    """Whether attack ``name`` was targeted (its facts name a target class or mode)."""
    return attack_facts(results, name).get("target") is not None


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
