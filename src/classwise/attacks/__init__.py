"""Attacks under the L-inf threat model, with a registry and a factory.

``create_attack("pgd20", model, eps=8 / 255)`` is how the CLI and the tests
build attacks; specs are "fgsm", "fgsm-rs", "pgd" (20 steps) and "pgdK".
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from .base import Attack, eval_mode, input_grad
from .fgsm import FGSM
from .losses import cross_entropy, cw_margin, loss_names, make_loss
from .pgd import PGD, grad_and_logits
from .threat import LinfThreat

__all__ = [
    "Attack", "LinfThreat", "FGSM", "PGD", "create_attack", "attack_names", "eval_mode",
    "input_grad", "grad_and_logits", "cross_entropy", "cw_margin", "loss_names", "make_loss",
]

DEFAULT_PGD_STEPS = 20  # "pgd" without K: the paper's PGD-20 test attack
_FGSM_OPTIONS = frozenset({"random_start", "loss", "temperature", "keep_best"})
_PGD_OPTIONS = _FGSM_OPTIONS | {"steps", "restarts"}


def attack_names() -> tuple[str, ...]:
    """Base attack names; "pgd" also takes a step count, as in "pgd40"."""
    return ("fgsm", "fgsm-rs", "pgd")


def create_attack(
    spec: str, model: nn.Module, eps: float, step_size: float | None = None, **kwargs: Any
) -> Attack:
    """Build the attack named by ``spec`` on ``model`` with L-inf radius ``eps``.

    Default step sizes: eps (fgsm), 1.25 eps (fgsm-rs, Wong et al. 2020),
    2.5 eps / steps (pgd, Madry et al. 2018). ``kwargs`` go to the attack
    (restarts, loss, temperature, random_start, keep_best; steps for "pgd").
    Raises ValueError with one clear line for any bad name or value.
    """
    name = spec.strip().lower()
    if name in ("fgsm", "fgsm-rs"):
        return _create_fgsm(name, model, eps, step_size, kwargs)
    match = re.fullmatch(r"pgd(\d+)?", name)
    if match is None:
        raise ValueError(f"unknown attack {spec!r}; known: fgsm, fgsm-rs, pgd, pgdK (K steps, e.g. pgd20)")
    steps = _pgd_steps(spec, match.group(1), kwargs)
    step = 2.5 * eps / steps if step_size is None else step_size
    return PGD(model, LinfThreat(eps, step), steps=steps, **kwargs)


def _create_fgsm(
    name: str, model: nn.Module, eps: float, step_size: float | None, kwargs: dict[str, Any]
) -> FGSM:
    _check_options(name, kwargs, _FGSM_OPTIONS)
    random_start = kwargs.pop("random_start", name == "fgsm-rs")
    default = 1.25 * eps if name == "fgsm-rs" else eps
    threat = LinfThreat(eps, default if step_size is None else step_size)
    return FGSM(model, threat, random_start=random_start, **kwargs)


def _pgd_steps(spec: str, from_spec: str | None, kwargs: dict[str, Any]) -> int:
    """Step count from "pgdK" or from ``steps=``; pops ``steps`` from kwargs."""
    _check_options(spec, kwargs, _PGD_OPTIONS)
    steps = kwargs.pop("steps", None)
    if from_spec is not None and steps is not None and int(from_spec) != steps:
        raise ValueError(f"{spec!r} fixes {from_spec} steps but steps={steps} was given")
    steps = int(from_spec) if from_spec is not None else steps
    steps = DEFAULT_PGD_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return steps


def _check_options(spec: str, kwargs: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ValueError(f"{spec!r} takes no option {', '.join(unknown)}; allowed: {known}")
