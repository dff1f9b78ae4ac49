"""The attack registry: spec strings -> attacks, for the CLI, configs and tests.

A spec is a base name, optionally with a parameter the base name parses:
a step count glued on ("pgd40", "cw-margin100") or a value after a colon
("tpgd:5", "transfer:runs/std"). ``attack_names()`` lists the base names,
``attack_usage()`` one line of help each, ``create_attack`` builds one.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from .base import Attack
from .cw_inf import CWInf
from .cw_margin import CWMarginPGD
from .fgsm import FGSM
from .library import BACKENDS, BY_BACKEND
from .nattack import NAttack
from .pgd import PGD
from .threat import LinfThreat
from .tpgd import TemperaturePGD
from .transfer import Transfer, load_surrogate

DEFAULT_PGD_STEPS = 20  # "pgd" without K: the paper's PGD-20 test attack
_FGSM_OPTIONS = frozenset({"random_start", "loss", "temperature", "keep_best"})
_PGD_OPTIONS = _FGSM_OPTIONS | {"steps", "restarts"}
_VARIANT_OPTIONS = frozenset({"steps", "restarts", "random_start", "keep_best"})


@dataclass(frozen=True)
class AttackRequest:
    """What a factory gets: the full spec, its parsed parameter and the call's arguments."""

    spec: str
    param: str | None
    model: nn.Module
    eps: float
    step_size: float | None
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class AttackEntry:
    """One registered attack: how to write it, what it is, how to build it.

    param: "none", "steps" (optional count glued on: "pgd40") or "value"
    (after a colon: "tpgd:5"). per_class: examples per class that evaluations
    draw by default (None: all), from the attack class. black_box: the attack
    uses only the model's outputs (queries) or another model's gradients.
    """

    usage: str
    summary: str
    build: Callable[[AttackRequest], Attack]
    param: str = "none"
    per_class: int | None = None
    black_box: bool = False


def _check_options(spec: str, kwargs: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{spec!r} takes no option {', '.join(unknown)}; allowed: {known}")


def _init_options(cls: type) -> frozenset[str]:
    """Keyword arguments of ``cls.__init__`` beyond model and threat."""
    params = inspect.signature(cls.__init__).parameters
    return frozenset(params) - {"self", "model", "threat"}


def _no_step_size(req: AttackRequest) -> None:
    if req.step_size is not None:
        raise ValueError(f"{req.spec!r} takes no step_size (it sets its own steps)")


def _steps(req: AttackRequest, kwargs: dict[str, Any]) -> int:
    """Step count from the spec ("pgd40") or ``steps=``; pops ``steps`` from kwargs."""
    steps = kwargs.pop("steps", None)
    if req.param is not None and steps is not None and int(req.param) != steps:
        raise ValueError(f"{req.spec!r} fixes {req.param} steps but steps={steps} was given")
    steps = int(req.param) if req.param is not None else steps
    steps = DEFAULT_PGD_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return steps


def _pgd_threat(req: AttackRequest, steps: int) -> LinfThreat:
    """Default step 2.5 eps / steps (Madry et al. 2018)."""
    return LinfThreat(req.eps, 2.5 * req.eps / steps if req.step_size is None else req.step_size)


def _fgsm(rs: bool) -> Callable[[AttackRequest], Attack]:
    """FGSM (step eps) or FGSM-RS (random start, step 1.25 eps, Wong et al. 2020)."""

    def build(req: AttackRequest) -> Attack:
        _check_options(req.spec, req.kwargs, _FGSM_OPTIONS)
        kwargs = dict(req.kwargs)
        random_start = kwargs.pop("random_start", rs)
        default = 1.25 * req.eps if rs else req.eps
        threat = LinfThreat(req.eps, default if req.step_size is None else req.step_size)
        return FGSM(req.model, threat, random_start=random_start, **kwargs)

    return build


def _pgd(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _PGD_OPTIONS)
    kwargs = dict(req.kwargs)
    steps = _steps(req, kwargs)
    return PGD(req.model, _pgd_threat(req, steps), steps=steps, **kwargs)


def _cw_margin(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _VARIANT_OPTIONS)
    kwargs = dict(req.kwargs)
    steps = _steps(req, kwargs)
    return CWMarginPGD(req.model, _pgd_threat(req, steps), steps=steps, **kwargs)


def _tpgd(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _VARIANT_OPTIONS)
    inv_temperature = _positive_float(req, "1/T")
    kwargs = dict(req.kwargs)
    steps = _steps(dataclasses.replace(req, param=None), kwargs)
    return TemperaturePGD(req.model, _pgd_threat(req, steps), inv_temperature, steps=steps, **kwargs)


def _transfer(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _init_options(Transfer))
    kwargs = dict(req.kwargs)
    if req.param and "surrogate" in kwargs:
        raise ValueError(f"{req.spec!r} names a surrogate file; do not also pass surrogate=")
    if not req.param and "surrogate" not in kwargs:
        raise ValueError("'transfer' needs a surrogate: transfer:PATH (checkpoint or run folder) or surrogate=")
    surrogate = kwargs.pop("surrogate") if "surrogate" in kwargs else load_surrogate(req.param or "")
    steps = kwargs.pop("steps", DEFAULT_PGD_STEPS)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return Transfer(req.model, _pgd_threat(req, steps), surrogate, steps=steps, **kwargs)


def _fixed(cls: type[Attack]) -> Callable[[AttackRequest], Attack]:
    """Factory of an attack that takes no step size and no spec parameter."""

    def build(req: AttackRequest) -> Attack:
        _no_step_size(req)
        _check_options(req.spec, req.kwargs, _init_options(cls))
        return cls(req.model, LinfThreat(req.eps, 0.0), **req.kwargs)

    return build


def _library(family: str) -> Callable[[AttackRequest], Attack]:
    """Factory of an AutoAttack attack; ``backend=`` picks the official package (default) or torchattacks."""

    def build(req: AttackRequest) -> Attack:
        _no_step_size(req)
        kwargs = dict(req.kwargs)
        backend = kwargs.pop("backend", BACKENDS[0])
        if backend not in BACKENDS:
            raise ValueError(f"{req.spec!r}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        cls = BY_BACKEND[family][backend]
        _check_options(req.spec, kwargs, _init_options(cls))
        return cls(req.model, LinfThreat(req.eps, 0.0), **kwargs)

    return build


def _positive_float(req: AttackRequest, what: str) -> float:
    try:
        value = float(req.param or "")
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        base = req.spec.partition(":")[0]
        raise ValueError(f"{req.spec!r}: {what} must be a positive number, as in {base}:2")
    return value


_LIB = "official AutoAttack, standard version; or backend=torchattacks"
_REGISTRY: Mapping[str, AttackEntry] = MappingProxyType({
    "fgsm": AttackEntry("fgsm", "FGSM, step eps, no random start", _fgsm(False)),
    "fgsm-rs": AttackEntry("fgsm-rs", "FGSM with random start, step 1.25 eps", _fgsm(True)),
    "pgd": AttackEntry("pgd[K]", "PGD on cross-entropy, K steps (20), random start", _pgd, "steps"),
    "cw-inf": AttackEntry("cw-inf", "Carlini-Wagner L-inf, minimum-distance tau search (robust: none within eps)",
                          _fixed(CWInf), per_class=CWInf.default_per_class),
    "cw-margin": AttackEntry("cw-margin[K]", "fixed-eps PGD on the CW margin loss, K steps (20); not cw-inf",
                             _cw_margin, "steps"),
    "tpgd": AttackEntry("tpgd:X", "Temperature-PGD-20, cross-entropy of softmax(X * logits), X = 1/T",
                        _tpgd, "value"),
    "nattack": AttackEntry("nattack", "N-Attack, query-based black box (population 300, sigma 0.1, lr 0.02)",
                           _fixed(NAttack), per_class=NAttack.default_per_class, black_box=True),
    "transfer": AttackEntry("transfer:PATH", "PGD-20 on a surrogate (checkpoint or run folder), judged on the model",
                            _transfer, "value", black_box=True),
    "apgd-ce": AttackEntry("apgd-ce", f"APGD on cross-entropy, 100 steps ({_LIB})", _library("apgd-ce")),
    "apgd-t": AttackEntry("apgd-t", f"targeted APGD-DLR, 9 targets, 100 steps ({_LIB})", _library("apgd-t")),
    "fab-t": AttackEntry("fab-t", f"targeted FAB, 9 targets, 100 steps ({_LIB})", _library("fab-t")),
    "square": AttackEntry("square", f"Square Attack, 5000 queries ({_LIB})", _library("square"), black_box=True),
    "autoattack": AttackEntry("autoattack", f"AutoAttack standard: apgd-ce, apgd-t, fab-t, square ({_LIB})",
                              _library("autoattack")),
})


def attack_names() -> tuple[str, ...]:
    """Registered base names; see :func:`attack_usage` for how each is written."""
    return tuple(_REGISTRY)


def attack_usage() -> dict[str, str]:
    """Base name -> "usage: summary", e.g. "pgd" -> "pgd[K]: PGD on cross-entropy, ..."."""
    return {name: f"{e.usage}: {e.summary}" for name, e in _REGISTRY.items()}


def _unknown(spec: str) -> ValueError:
    known = ", ".join(e.usage for e in _REGISTRY.values())
    return ValueError(f"unknown attack {spec!r}; known: {known}")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Base name and parameter of ``spec``: "pgd40" -> ("pgd", "40"), "tpgd:2" -> ("tpgd", "2")."""
    base, colon, param = spec.strip().partition(":")
    base = base.lower()
    if colon:
        if base in _REGISTRY and _REGISTRY[base].param == "value":
            return base, param.strip()
        raise _unknown(spec)
    if base in _REGISTRY:
        return base, None
    match = re.fullmatch(r"([a-z-]*[a-z])(\d+)", base)
    if match and match.group(1) in _REGISTRY and _REGISTRY[match.group(1)].param == "steps":
        return match.group(1), match.group(2)
    raise _unknown(spec)


def create_attack(
    spec: str, model: nn.Module, eps: float, step_size: float | None = None, **kwargs: Any
) -> Attack:
    """Build the attack named by ``spec`` on ``model`` with L-inf radius ``eps``.

    Specs (see :func:`attack_usage`): fgsm, fgsm-rs, pgd[K], cw-inf,
    cw-margin[K], tpgd:X, nattack, transfer:PATH, apgd-ce, apgd-t, fab-t,
    square, autoattack. Default step sizes: eps (fgsm), 1.25 eps (fgsm-rs,
    Wong et al. 2020), 2.5 eps / steps (pgd, cw-margin, tpgd, transfer;
    Madry et al. 2018); cw-inf, nattack and AutoAttack's attacks take
    no step size; the latter run the official AutoAttack unless
    ``backend="torchattacks"``. ``kwargs`` go to the attack class (e.g. restarts, loss,
    temperature, keep_best for pgd; max_iterations for cw-inf and nattack;
    steps, n_queries for the wrappers; surrogate for transfer).
    Raises ValueError with one clear line for any bad name or value.
    """
    base, param = parse_spec(spec)
    entry = _REGISTRY[base]
    if entry.param == "none" and param is not None:
        raise ValueError(f"{spec!r}: {base!r} takes no parameter")
    return entry.build(AttackRequest(spec, param, model, eps, step_size, dict(kwargs)))


def attack_default_per_class(spec: str) -> int | None:
    """Examples per class an evaluation draws by default for ``spec`` (None: all).

    200 for "cw-inf" and "nattack" (appendix E of the paper), else None.
    """
    return _REGISTRY[parse_spec(spec)[0]].per_class


def attack_is_black_box(spec: str) -> bool:
    """Whether ``spec`` is a black-box attack (nattack, square, transfer:PATH)."""
    return _REGISTRY[parse_spec(spec)[0]].black_box


__all__ = [
    "AttackEntry", "AttackRequest", "attack_default_per_class", "attack_is_black_box", "attack_names", "attack_usage",
    "create_attack", "parse_spec",
]
