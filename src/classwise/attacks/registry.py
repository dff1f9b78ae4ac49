"""The attack registry: spec strings -> attacks, for the CLI, configs and tests.

A spec is a base name, optionally with a parameter the base name parses:
a step count glued on ("pgd40", "cw-margin100") or a value after a colon
("tpgd:5", "transfer:runs/std"), then any ``@key=value`` settings
("pgd20@target=3", "pgd20@step=0.003@norm=l2") in the one grammar of
:class:`classwise.spec.AttackSpec`.
``attack_names()`` lists the base names, ``attack_usage()`` one line of help
each, ``create_attack`` builds one.
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

from ..config import AttackConfig
from ..runs import load_model_and_dataset
from ..errors import ClasswiseError, did_you_mean
from ..spec import AttackSpec
from .apgd import APGD
from .base import Attack
from .cw_inf import CWInf
from .cw_margin import CWMarginPGD
from .fgsm import FGSM
from .fmn import FMN
from .library import BACKENDS, BY_BACKEND
from .nattack import NAttack
from .pgd import PGD
from .strong import Strong
from .threat import Threat, check_norm, make_threat
from .tpgd import TemperaturePGD
from .transfer import Transfer

DEFAULT_PGD_STEPS = 20  # "pgd" without K: the paper's PGD-20 test attack
_FGSM_OPTIONS = frozenset({"random_start", "loss", "temperature", "keep_best"})
_PGD_OPTIONS = _FGSM_OPTIONS | {"steps", "restarts", "target"}
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
    norm: str = "linf"


@dataclass(frozen=True)
class AttackEntry:
    """One registered attack: how to write it, what it is, how to build it.

    param: "none", "steps" (optional count glued on: "pgd40") or "value"
    (after a colon: "tpgd:5"). ``per_class`` and ``black_box`` are the attack
    class's own facts (:attr:`Attack.default_per_class`, :attr:`Attack.black_box`).
    """

    usage: str
    summary: str
    cls: type[Attack]
    build: Callable[[AttackRequest], Attack]
    param: str = "none"
    only_norms: tuple[str, ...] | None = None  # narrower than the class's own norms (e.g. fgm: L2 only)

    @property
    def per_class(self) -> int | None:
        return self.cls.default_per_class

    @property
    def black_box(self) -> bool:
        return self.cls.black_box

    @property
    def norms(self) -> tuple[str, ...]:
        return self.only_norms if self.only_norms is not None else self.cls.norms


def _check_options(spec: str, kwargs: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{spec!r} takes no option {', '.join(unknown)}; allowed: {known}")


def _init_options(cls: type[Attack]) -> frozenset[str]:
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


def _pgd_threat(req: AttackRequest, steps: int) -> Threat:
    """Default step 2.5 eps / steps (Madry et al. 2018), in the norm's units."""
    return make_threat(req.norm, req.eps, 2.5 * req.eps / steps if req.step_size is None else req.step_size)


def _fgsm(rs: bool) -> Callable[[AttackRequest], Attack]:
    """FGSM (step eps) or FGSM-RS (random start, step 1.25 eps, Wong et al. 2020)."""

    def build(req: AttackRequest) -> Attack:
        _check_options(req.spec, req.kwargs, _FGSM_OPTIONS)
        kwargs = dict(req.kwargs)
        random_start = kwargs.pop("random_start", rs)
        default = 1.25 * req.eps if rs else req.eps
        threat = make_threat(req.norm, req.eps, default if req.step_size is None else req.step_size)
        return FGSM(req.model, threat, random_start=random_start, **kwargs)

    return build


def _pgd(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _PGD_OPTIONS)
    kwargs = dict(req.kwargs)
    steps = _steps(req, kwargs)
    return PGD(req.model, _pgd_threat(req, steps), steps=steps, **kwargs)


def _cw_margin(req: AttackRequest) -> Attack:
    _check_options(req.spec, req.kwargs, _VARIANT_OPTIONS | {"target"})
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
    if "surrogate" not in kwargs:
        kwargs["surrogate"], kwargs["trained_on"] = load_model_and_dataset(req.param or "")
    steps = kwargs.pop("steps", DEFAULT_PGD_STEPS)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return Transfer(req.model, _pgd_threat(req, steps), steps=steps, **kwargs)


def _fixed(cls: type[Attack]) -> Callable[[AttackRequest], Attack]:
    """Factory of an attack that takes no step size and no spec parameter."""

    def build(req: AttackRequest) -> Attack:
        _no_step_size(req)
        _check_options(req.spec, req.kwargs, _init_options(cls))
        return cls(req.model, make_threat(req.norm, req.eps, 0.0), **req.kwargs)

    return build


def _fmn(req: AttackRequest) -> Attack:
    _no_step_size(req)
    _check_options(req.spec, req.kwargs, _init_options(FMN))
    kwargs = dict(req.kwargs)
    steps = kwargs.pop("steps", None)
    steps = int(req.param) if req.param is not None else (100 if steps is None else steps)
    return FMN(req.model, make_threat(req.norm, req.eps, 0.0), steps=steps, **kwargs)


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
        return cls(req.model, make_threat(req.norm, req.eps, 0.0), **kwargs)

    return build


def _apgd(req: AttackRequest) -> Attack:
    """Our APGD: "apgd" (100 steps), "apgd50" or steps=; loss=ce|dlr, @target=J (a class index)."""
    _no_step_size(req)
    _check_options(req.spec, req.kwargs, _init_options(APGD))
    kwargs = dict(req.kwargs)
    steps = kwargs.pop("steps", None)
    if req.param is not None and steps is not None and int(req.param) != steps:
        raise ValueError(f"{req.spec!r} fixes {req.param} steps but steps={steps} was given")
    steps = int(req.param) if req.param is not None else (100 if steps is None else steps)
    return APGD(req.model, make_threat(req.norm, req.eps, 0.0), steps=steps, **kwargs)


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
_LIB_NORMS = ("linf", "l2")  # both backends pass the threat's norm on ("Linf" / "L2")
_REGISTRY: Mapping[str, AttackEntry] = MappingProxyType({
    "fgsm": AttackEntry("fgsm", "FGSM, step eps, no random start", FGSM, _fgsm(False)),
    "fgsm-rs": AttackEntry("fgsm-rs", "FGSM with random start, step 1.25 eps", FGSM, _fgsm(True)),
    "pgd": AttackEntry("pgd[K]", "PGD on cross-entropy, K steps (20), random start", PGD, _pgd, "steps"),
    "cw-inf": AttackEntry("cw-inf", "Carlini-Wagner L-inf, minimum-distance tau search (robust: none within eps)",
                          CWInf, _fixed(CWInf), only_norms=("linf",)),
    "cw-margin": AttackEntry("cw-margin[K]", "fixed-eps PGD on the CW margin loss, K steps (20); not cw-inf",
                             CWMarginPGD, _cw_margin, "steps"),
    "tpgd": AttackEntry("tpgd:X", "Temperature-PGD-20, cross-entropy of softmax(X * logits), X = 1/T",
                        TemperaturePGD, _tpgd, "value"),
    "nattack": AttackEntry("nattack", "N-Attack, query-based black box (population 300, sigma 0.1, lr 0.02)",
                           NAttack, _fixed(NAttack)),
    "fgm": AttackEntry("fgm", "fast gradient method: one L2-normalised step of eps (L2 only)", FGSM, _fgsm(False),
                       only_norms=("l2",)),
    "fmn": AttackEntry("fmn[K]", "fast minimum-norm attack, K steps (100); records each example's minimal distance",
                       FMN, _fmn, "steps"),
    "transfer": AttackEntry("transfer:PATH", "PGD-20 on a surrogate (checkpoint or run folder), judged on the model",
                            Transfer, _transfer, "value"),
    "apgd-ce": AttackEntry("apgd-ce", f"APGD on cross-entropy, 100 steps ({_LIB})", BY_BACKEND["apgd-ce"]["autoattack"],
                           _library("apgd-ce"), only_norms=_LIB_NORMS),
    "apgd-t": AttackEntry("apgd-t", f"targeted APGD-DLR, 9 targets, 100 steps ({_LIB})", BY_BACKEND["apgd-t"]["autoattack"],
                          _library("apgd-t"), only_norms=_LIB_NORMS),
    "fab-t": AttackEntry("fab-t", f"targeted FAB, 9 targets, 100 steps ({_LIB})", BY_BACKEND["fab-t"]["autoattack"],
                         _library("fab-t"), only_norms=_LIB_NORMS),
    "square": AttackEntry("square", f"Square Attack, 5000 queries ({_LIB})", BY_BACKEND["square"]["autoattack"],
                          _library("square"), only_norms=_LIB_NORMS),
    "autoattack": AttackEntry("autoattack", f"AutoAttack standard: apgd-ce, apgd-t, fab-t, square ({_LIB})",
                              BY_BACKEND["autoattack"]["autoattack"], _library("autoattack"), only_norms=_LIB_NORMS),
    "apgd": AttackEntry("apgd[K]", "our APGD, K steps (100), loss=ce|dlr, @target=J (DLR-T with loss=dlr); compacts",
                        APGD, _apgd, "steps"),
    "strong": AttackEntry("strong", "APGD-CE 100, then APGD-DLR-T 50 toward the top 2 runner-up classes "
                          "from where APGD-CE left each example; survivors only; @restarts=R reruns it on the survivors",
                          Strong, _fixed(Strong)),
})


def attack_names() -> tuple[str, ...]:
    """Registered base names; see :func:`attack_usage` for how each is written."""
    return tuple(_REGISTRY)


def attack_usage() -> dict[str, str]:
    """Base name -> "usage: summary", e.g. "pgd" -> "pgd[K]: PGD on cross-entropy, ..."."""
    return {name: f"{e.usage}: {e.summary}" for name, e in _REGISTRY.items()}


def _unknown(spec: str) -> ValueError:
    known = ", ".join(e.usage for e in _REGISTRY.values())
    steps = re.sub(r"^\D*", "", spec)  # "pdg20" -> "20": also suggest "pgd20"
    names = [*_REGISTRY, *(n + steps for n, e in _REGISTRY.items() if steps and e.param == "steps")]
    return ValueError(f"unknown attack {spec!r}{did_you_mean(spec.lower(), names)}; known: {known}")


def _spec(spec: str | AttackSpec) -> AttackSpec:
    """``spec`` as an :class:`AttackSpec` (its grammar errors as one ValueError line)."""
    if isinstance(spec, AttackSpec):
        return spec
    try:
        return AttackSpec.parse(spec)
    except ClasswiseError as e:
        raise ValueError(str(e)) from None


def parse_spec(spec: str | AttackSpec) -> tuple[str, str | None]:
    """Registry base name and parameter of ``spec``: "pgd40" -> ("pgd", "40"), "tpgd:2" -> ("tpgd", "2").

    The spec's ``@key=value`` settings are left aside (see :class:`classwise.spec.AttackSpec`).
    """
    parsed = _spec(spec)
    if parsed.name.lower() in _REGISTRY and ":" not in parsed.name:
        return parsed.name.lower(), None
    base, param = parsed.base, parsed.param
    if base in _REGISTRY and _REGISTRY[base].param == ("value" if ":" in parsed.name else "steps"):
        return base, param
    raise _unknown(parsed.name)


def create_attack(
    spec: str | AttackSpec, model: nn.Module, eps: float, step_size: float | None = None, norm: str = "linf",
    **kwargs: Any,
) -> Attack:
    """Build the attack named by ``spec`` on ``model`` with radius ``eps`` in ``norm`` ("linf" or "l2").

    Specs (see :func:`attack_usage`): fgsm, fgsm-rs, pgd[K], cw-inf,
    cw-margin[K], tpgd:X, nattack, transfer:PATH, apgd-ce, apgd-t, fab-t,
    square, autoattack, each with optional ``@key=value`` settings in the one
    grammar of :class:`classwise.spec.AttackSpec` ("pgd20@step=0.003@restarts=5",
    "pgd20@target=3@norm=l2"; a result key is such a spec). A setting in the
    spec overrides the argument of the same name (eps, step_size, norm) and
    must not repeat a keyword argument; ``@n=`` (examples of a stored result)
    sets nothing. Default step sizes: eps (fgsm), 1.25 eps (fgsm-rs,
    Wong et al. 2020), 2.5 eps / steps (pgd, cw-margin, tpgd, transfer;
    Madry et al. 2018); cw-inf, nattack and AutoAttack's attacks take
    no step size; the latter run the official AutoAttack unless
    ``backend="torchattacks"``. ``kwargs`` go to the attack class (e.g. restarts, loss,
    temperature, keep_best for pgd; max_iterations for cw-inf and nattack;
    steps, n_queries for the wrappers; surrogate for transfer).
    ``target`` (pgd and cw-margin) is a class index, "likely" or "all".
    cw-inf and nattack exist for L-inf only, fgm for L2 only; fmn[K] (fast minimum-norm)
    for both. Raises ValueError with one clear line for any bad name or value.
    """
    parsed, text = _spec(spec), str(spec)
    base, param = parse_spec(parsed)
    entry = _REGISTRY[base]
    if entry.param == "none" and param is not None:
        raise ValueError(f"{text!r}: {base!r} takes no parameter")
    norm, kwargs = _with_spec_settings(parsed, text, check_norm(norm), dict(kwargs))
    if norm not in entry.norms:
        raise ValueError(f"{text!r} exists for the {'/'.join(entry.norms)} threat model only, not {norm}")
    eps = eps if parsed.eps is None else parsed.eps
    step_size = step_size if parsed.step_size is None else parsed.step_size
    return entry.build(AttackRequest(text, param, model, eps, step_size, kwargs, norm))


def _with_spec_settings(spec: AttackSpec, text: str, norm: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The norm and keyword arguments after the spec's ``@norm=``, ``@restarts=`` and option settings."""
    if spec.norm is not None:
        if norm != "linf" and norm != spec.norm:
            raise ValueError(f"{text!r} says norm {spec.norm} but norm={norm} was given")
        norm = spec.norm
    settings = spec.option_dict | ({"restarts": spec.restarts} if spec.restarts is not None else {})
    for key, value in settings.items():
        if key in kwargs:
            raise ValueError(f"{text!r} sets {key}; do not also pass {key}=")
        kwargs[key] = value
    return norm, kwargs


def build_attack(cfg: AttackConfig, model: nn.Module) -> Attack:
    """The attack of an :class:`AttackConfig` (name, norm, eps, step size, restarts, options) on ``model``."""
    return create_attack(cfg.spec, model, cfg.eps, step_size=cfg.step_size, norm=cfg.norm)


def attack_default_per_class(spec: str | AttackSpec) -> int | None:
    """Examples per class an evaluation draws by default for ``spec`` (None: all).

    200 for "cw-inf" and "nattack" (appendix E of the paper), else None.
    """
    return _REGISTRY[parse_spec(spec)[0]].per_class


def attack_is_black_box(spec: str | AttackSpec) -> bool:
    """Whether ``spec`` is a black-box attack (nattack, square, transfer:PATH)."""
    return _REGISTRY[parse_spec(spec)[0]].black_box


__all__ = [
    "AttackEntry", "AttackRequest", "build_attack", "attack_default_per_class", "attack_is_black_box", "attack_names",
    "attack_usage", "create_attack", "parse_spec",
]
