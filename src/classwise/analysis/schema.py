"""The typed summary of one evaluation, shared by analysis and report, and its JSON form.

:class:`Summary` and its blocks are frozen dataclasses. Their JSON form is
summary.json: a dataclass field is a JSON key (``metadata["key"]`` where the
key is not a Python name, e.g. "class"), in field order; fields marked
``OMIT`` leave their key out when None; sequences are tuples here and lists in
JSON. :func:`decode` reads a JSON value into a type and says which field is
wrong (:class:`~classwise.errors.ClasswiseError` naming the file and field);
:func:`encode` is its exact inverse: ``decode(T, encode(x)) == x``.

Numbers are percent; None stands for NaN (a class without examples).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..errors import ClasswiseError
from ..fileio import read_json

SCHEMA_VERSION = 3  # 2: attack blocks gain worst_class_interval and spread; 3: and cost
Num = float | None  # a percentage or a statistic; None where it is undefined (NaN)
OMIT = {"omit": True}  # metadata: leave the key out of the JSON when the value is None
SPREAD = {"spread": True}  # metadata: a mapping whose keys are merged into the parent object


def _key(name: str) -> dict[str, Any]:
    return {"key": name}


@dataclass(frozen=True)
class RankCall:
    """Whether the best (or worst) class is significantly so, or which classes it is tied with."""

    index: int = field(metadata=_key("class"))
    significant: bool
    tied_with: tuple[int, ...]


@dataclass(frozen=True)
class WorstClassInterval:
    """The weakest class with a simultaneous 95% interval of the true minimum (:mod:`classwise.analysis.fairness`).

    ``classes``: observed at the minimum (several when tied); ``candidates``: every
    class that may be the truly worst; ``significant``: one candidate only.
    """

    percent: float
    low: float
    high: float
    classes: tuple[int, ...]
    candidates: tuple[int, ...]
    significant: bool
    confidence: float


@dataclass(frozen=True)
class ClassSpread:
    """Spread of the class-wise accuracies: std (ddof 0), NSD = std / mean (None when the mean is 0), worst-k mean."""

    std: float
    nsd: Num
    worst_k_mean: float
    k: int


@dataclass(frozen=True)
class AttackCost:
    """What an attack spent (:meth:`classwise.results.EvalResults.cost`): passes through the model.

    ``forwards`` and ``backwards`` (input-gradient passes) are totals over the
    ``examples`` it was evaluated on, the judging forward included; a worst case
    over several attacks spent the sum of theirs.
    """

    forwards: int
    backwards: int
    examples: int
    backwards_per_example: float

    @property
    def text(self) -> str:
        """E.g. "2.1 M gradient passes, 214 per example"."""
        return f"{_count(self.backwards)} gradient passes, {self.per_example} per example"

    @property
    def per_example(self) -> str:
        """Gradient passes per example as text: "214", "5", "0.46" (FGSM on a model that misclassifies half)."""
        v = self.backwards_per_example
        return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _count(n: int) -> str:
    """A pass count in words: 950, 12.3 k, 2.1 M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


@dataclass(frozen=True, kw_only=True)
class AccuracyBlock:
    """One prediction set (clean, or one attack over its examples): table 2's row with 95% intervals.

    per_class, n, count, ci95: (K,). best/worst/gap/calls (and, from schema 2,
    worst_class_interval and spread) are None when no class has examples.
    ``examples``, ``norm`` and ``eps`` exist on attack blocks only; ``cost``
    on attack blocks whose results recorded what the attack spent.
    """

    overall: Num
    overall_ci95: tuple[Num, Num]
    per_class: tuple[Num, ...]
    n: tuple[int, ...]
    count: tuple[int, ...]
    ci95: tuple[tuple[Num, Num], ...]
    best_class: int | None
    worst_class: int | None
    gap: Num
    best_call: RankCall | None
    worst_call: RankCall | None
    examples: int | None = field(default=None, metadata=OMIT)
    norm: str | None = field(default=None, metadata=OMIT)
    eps: float | None = field(default=None, metadata=OMIT)
    worst_class_interval: WorstClassInterval | None = field(default=None, metadata=OMIT)  # schema 2
    spread: ClassSpread | None = field(default=None, metadata=OMIT)  # schema 2
    cost: AttackCost | None = field(default=None, metadata=OMIT)  # schema 3; attack blocks with cost records


@dataclass(frozen=True)
class HeadlineBasis:
    """What the headline is made of: the attacks it takes the worst case of, on how many examples."""

    attack: str
    over: tuple[str, ...]
    examples: int
    text: str


@dataclass(frozen=True)
class Correlation:
    """A Spearman rho with its p-value and bootstrap interval (:class:`classwise.analysis.stats.Correlation`)."""

    rho: Num
    p: Num
    ci: tuple[Num, Num]
    k: int
    confidence: float
    bootstrap: str


@dataclass(frozen=True)
class Overall:
    diff: Num
    p: float


@dataclass(frozen=True)
class PairedBlock:
    """One attack minus the reference per class (K,), exact McNemar tests (tables 3, 4, 6)."""

    n: tuple[int, ...]
    diff: tuple[Num, ...]
    p: tuple[Num, ...]
    p_holm: tuple[Num, ...]
    significant: tuple[bool, ...]
    alpha: float
    overall: Overall


@dataclass(frozen=True)
class PairedClaims:
    reference: str | None
    attacks: Mapping[str, PairedBlock]


@dataclass(frozen=True)
class WeakHurtMore:
    """Section 3.3: Spearman of the weaker attack's class robustness and the drop to the stronger."""

    weaker: str
    stronger: str
    rho: Num
    p: Num
    ci: tuple[Num, Num]
    k: int
    confidence: float
    bootstrap: str


@dataclass(frozen=True)
class WeightNorm:
    """Figure 4: per-class classifier weight norms, rho against robustness under ``attack`` and against clean."""

    attack: str
    norms: tuple[float, ...]
    robust: Correlation
    clean: Correlation


@dataclass(frozen=True)
class Confound:
    index: int = field(metadata=_key("class"))
    share: float


@dataclass(frozen=True)
class Weakest:
    """Why one weak class is weak: its robustness, gap to clean, confound classes, superclass share."""

    index: int = field(metadata=_key("class"))
    robust: Num
    ci95: tuple[Num, Num]
    n: int
    clean: Num
    gap_to_clean: Num
    flips: int
    confounds: tuple[Confound, ...]
    within_superclass: float | None


@dataclass(frozen=True)
class Claims:
    paired: PairedClaims
    weak_hurt_more: tuple[WeakHurtMore, ...]
    weight_norm: WeightNorm | None
    weakest: tuple[Weakest, ...]


Distance = float | str | None  # a distance; "inf" when none was found, None when undefined


@dataclass(frozen=True)
class Median:
    median: Distance
    low: Distance
    high: Distance


@dataclass(frozen=True)
class Medians:
    overall: Median
    per_class: tuple[Median, ...]


@dataclass(frozen=True)
class Eps50:
    overall: Distance
    per_class: tuple[Distance, ...]


@dataclass(frozen=True)
class Curves:
    """One minimum-norm attack: robustness (%) over eps (E,), overall and per class (K, E)."""

    attack: str
    norm: str
    eps: tuple[float, ...]
    overall: tuple[Num, ...]
    per_class: tuple[tuple[Num, ...], ...]
    median: Medians
    eps50: Eps50
    n: tuple[int, ...]


@dataclass(frozen=True)
class Targeted:
    """One targeted attack: success (%) from class i (row) to target j (column), None where never tried."""

    success: tuple[tuple[Num, ...], ...]
    tries: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Spearman:
    rho: Num
    p: Num


@dataclass(frozen=True)
class NormComparison:
    """L-inf beside L2 per class ("linf", "l2" keys), rank 1 = weakest."""

    attacks: Mapping[str, str]
    per_class: Mapping[str, tuple[Num, ...]]
    rank: Mapping[str, tuple[int, ...]]
    weakest: Mapping[str, int | None]
    spearman: Spearman


@dataclass(frozen=True)
class HomingBlock:
    """The homing experiment's totals (homing.json of :mod:`classwise.homing`)."""

    attack: str
    removed: tuple[int, ...]
    flipped: int
    homed: int
    share: float | None
    missing: tuple[int, ...] = ()


@dataclass(frozen=True)
class Flag:
    """One failed sanity check (:class:`classwise.analysis.sanity.SanityFlag` as JSON)."""

    check: str
    scope: str
    detail: str
    suggests: str


@dataclass(frozen=True)
class Sanity:
    checks: tuple[str, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything :func:`classwise.analysis.summarize` says about one evaluation (summary.json).

    headline: the attack whose robustness headlines the report (the suite's worst
    case when there is one); protocol: the paper's protocol attack, which draws the
    per-example figures. curves, targeted, norms: only where the results hold them.
    dataset, model, checkpoint, eps, homing, sanity: added by the job that writes
    the run's summary; ``extra``: any other entries, kept as they are.
    """

    partial: str | None = field(default=None, metadata=OMIT)
    clean: AccuracyBlock
    attacks: Mapping[str, AccuracyBlock]
    class_names: tuple[str, ...]
    num_examples: int
    headline: str | None
    headline_basis: HeadlineBasis | None
    protocol: str | None
    claims: Claims
    superclasses: Mapping[str, tuple[int, ...]] | None
    curves: Mapping[str, Curves] | None = field(default=None, metadata=OMIT)
    targeted: Mapping[str, Targeted] | None = field(default=None, metadata=OMIT)
    norms: NormComparison | None = field(default=None, metadata=OMIT)
    dataset: Any = field(default=None, metadata=OMIT)
    model: Any = field(default=None, metadata=OMIT)
    checkpoint: Any = field(default=None, metadata=OMIT)
    eps: Any = field(default=None, metadata=OMIT)
    homing: HomingBlock | None = field(default=None, metadata=OMIT)
    sanity: Sanity | None = field(default=None, metadata=OMIT)
    extra: Mapping[str, Any] = field(default_factory=dict, metadata=SPREAD)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def block(self, name: str | None) -> AccuracyBlock:
        """The block of attack ``name``; the clean block for None."""
        return self.clean if name is None else self.attacks[name]

    def rows(self) -> list[tuple[str, AccuracyBlock]]:
        """[(row name, block)]: "clean" first, then each attack in summary order."""
        return [("clean", self.clean), *self.attacks.items()]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (summary.json)."""
        return encode(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "summary") -> Summary:
        """The typed summary of a JSON object; ClasswiseError naming ``source`` and the field when malformed."""
        if isinstance(data, dict) and "schema_version" not in data:
            data = data | {"schema_version": 1}  # written before schema versions
        summary = decode(cls, data, source)
        if summary.schema_version > SCHEMA_VERSION:
            raise ClasswiseError(f"{source}: schema_version {summary.schema_version} is newer than this classwise "
                                 f"reads ({SCHEMA_VERSION}); upgrade classwise")
        for row, block in summary.rows():
            _check_block(block, summary.num_classes, f"{source}: field '{row if row == 'clean' else 'attacks.' + row}")
        return summary


def _check_block(block: AccuracyBlock, k: int, where: str) -> None:
    """One error unless the block holds one entry per class (per_class, n, count, ci95: (K,)) and its best and
    worst class are classes; a hand-edited block would otherwise fail deep inside a table or figure."""
    for name in ("per_class", "n", "count", "ci95"):
        if len(getattr(block, name)) != k:
            raise ClasswiseError(f"{where}.{name}': expected {k} entries (one per class), got "
                                 f"{len(getattr(block, name))}; re-run `classwise report` to rewrite it")
    for name in ("best_class", "worst_class"):
        c = getattr(block, name)
        if c is not None and not 0 <= c < k:
            raise ClasswiseError(f"{where}.{name}': {c} is not a class index in [0, {k}); "
                                 "re-run `classwise report` to rewrite it")


def load_summary(path: str | Path) -> Summary:
    """Read summary.json into a :class:`Summary` (files without schema_version are version 1)."""
    return Summary.from_dict(read_json(Path(path)), str(path))


# --- the JSON codec -------------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """The JSON form of a schema value: dataclasses as objects, tuples as lists."""
    if dataclasses.is_dataclass(value):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("spread"):
                out |= {k: encode(x) for k, x in v.items()}
            elif not (v is None and f.metadata.get("omit")):
                out[f.metadata.get("key", f.name)] = encode(v)
        return out
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    return value


class _Bad(Exception):
    """A malformed field: where (a dotted path) and what was expected."""

    def __init__(self, at: str, what: str) -> None:
        super().__init__(f"field {at!r}: {what}")


def decode(tp: Any, value: Any, source: str = "summary") -> Any:
    """``value`` (JSON) as type ``tp``; ClasswiseError "SOURCE: field 'a.b[2]': expected ..." when it is not."""
    try:
        return _decode(tp, value, "")
    except _Bad as err:
        raise ClasswiseError(f"{source}: {err}; re-run `classwise report` to rewrite it") from None


def _decode(tp: Any, value: Any, at: str) -> Any:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_object(tp, value, at)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return _decode_union(args, value, at)
    if origin is tuple:
        return _decode_tuple(args, value, at)
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise _Bad(at, f"expected an object, got {_kind(value)}")
        return {k: _decode(args[1], v, f"{at}.{k}".lstrip(".")) for k, v in value.items()}
    return _decode_scalar(tp, value, at)


def _decode_object(tp: type, value: Any, at: str) -> Any:
    if not isinstance(value, dict):
        raise _Bad(at or "(top)", f"expected an object, got {_kind(value)}")
    hints, kwargs, known = _hints(tp), {}, set()
    for f in dataclasses.fields(tp):
        if f.metadata.get("spread"):
            continue
        key = f.metadata.get("key", f.name)
        known.add(key)
        if key in value:
            kwargs[f.name] = _decode(hints[f.name], value[key], f"{at}.{key}".lstrip("."))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Bad(f"{at}.{key}".lstrip("."), "missing")
    spread = [f for f in dataclasses.fields(tp) if f.metadata.get("spread")]
    if spread:
        kwargs[spread[0].name] = {k: v for k, v in value.items() if k not in known}
    return tp(**kwargs)


def _decode_union(args: tuple, value: Any, at: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arm in (a for a in args if a is not type(None)):
        try:
            return _decode(arm, value, at)
        except _Bad as err:
            errors.append(err)
    raise errors[0] if len(errors) == 1 else _Bad(at, f"unexpected {_kind(value)}")


def _decode_tuple(args: tuple, value: Any, at: str) -> tuple:
    if not isinstance(value, list):
        raise _Bad(at, f"expected a list, got {_kind(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], v, f"{at}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise _Bad(at, f"expected {len(args)} entries, got {len(value)}")
    return tuple(_decode(a, v, f"{at}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _decode_scalar(tp: Any, value: Any, at: str) -> Any:
    if tp is Any:
        return value
    ok = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}[tp]
    if isinstance(value, bool) and tp is not bool or not isinstance(value, ok):
        raise _Bad(at, f"expected {tp.__name__}, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):  # NaN is written as null; Infinity is never written
        raise _Bad(at, f"expected a finite number or null, got {value!r}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:60]


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)
