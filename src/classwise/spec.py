"""The one attack-spec grammar: ``name[@key=value...]``, parsed and written in one place.

A spec names a registry attack and, optionally, its settings:
``pgd20@step=0.003``, ``pgd20@eps=8/255@restarts=5@loss=cw``,
``pgd5@target=likely@norm=l2``, ``tpgd:5``, ``transfer:runs/std@steps=10``.
The same rule set serves the CLI's ``--attacks``, a YAML attack's ``name:``,
``evaluate()``'s attack list, the registry (``create_attack``) and the keys
results are stored under, so a result key parses back into the spec of its
attack. Keys:

* ``eps``, ``step`` (or ``step_size``): the threat model's radius and step,
  finite numbers >= 0 (``0.03``, ``1e-3``, ``8/255``);
* ``restarts``: an integer >= 1; ``norm``: ``linf`` or ``l2``;
* ``n``: the number of examples a stored result saw (result keys only: it
  tells two results of one attack apart and is no setting of the attack);
* any other key: an option of the attack class (``loss=cw``, ``target=3``,
  ``random_start=false``); values are numbers, ``true``/``false`` or text.

Keys are case-insensitive and may come in any order; :meth:`AttackSpec.format`
writes them in one order (eps, step, restarts, options by key, norm, n).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import ClasswiseError

NORMS = ("linf", "l2")  # threat models: the L-inf and the L2 ball (classwise.attacks.threat)
KEYS = ("eps", "step", "restarts", "norm", "n")  # keys with a field of their own; others are options
_ALIASES = {"step_size": "step"}

# A decimal or scientific number, or a fraction of two of them ("8/255"): YAML 1.1 reads
# "1e-3" and "8/255" as strings, so number fields accept such text.
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_TEXT = re.compile(rf"\s*({_NUMBER})\s*(?:/\s*({_NUMBER})\s*)?")
_STEPS_NAME = re.compile(r"([a-z-]*[a-z])(\d+)")  # "pgd40" -> ("pgd", "40")


def number_from_text(text: str) -> int | float | None:
    """0.1, 1e-3, 1e9, 8/255 -> the number; None for any other text (nothing is evaluated)."""
    match = _NUMBER_TEXT.fullmatch(text)
    if match is None:
        return None
    num, den = match.groups()
    if den is None:
        return int(num) if re.fullmatch(r"[+-]?\d+", num) else float(num)
    return float(num) / float(den) if float(den) != 0 else None


def parse_number(text: str | float, what: str) -> float:
    """A finite number given as text (CLI flags, YAML): "0.03", "1e-3", "8/255"; one clear error otherwise."""
    value = number_from_text(text) if isinstance(text, str) else text
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        raise ClasswiseError(f"{what} must be a finite number such as 0.03 or 8/255, got {text!r}")
    return float(value)


def format_number(x: float) -> str:
    """The shortest text that parses back to exactly ``x``: "0.03", "8/255", "1e-05", "2.0" for floats."""
    if isinstance(x, bool) or not isinstance(x, float):
        return str(x)
    text = f"{x:g}"
    if float(text) != x:
        k = round(x * 255)
        text = f"{k}/255" if 0 < k < 10**6 and float(k) / 255 == x else repr(x)
    return text + ".0" if re.fullmatch(r"[+-]?\d+", text) else text


def parse_value(text: str) -> Any:
    """An option's value: an int or float (``3``, ``1e-3``, ``8/255``), ``true``/``false``, else the text."""
    number = number_from_text(text)
    if number is not None:
        return number
    return {"true": True, "false": False}.get(text.lower(), text)


def split_name(name: str) -> tuple[str, str | None]:
    """Base name and parameter of a spec's name: "pgd40" -> ("pgd", "40"), "tpgd:2" -> ("tpgd", "2"),
    "fgsm-rs" -> ("fgsm-rs", None). Whether the base exists is the registry's business."""
    base, colon, param = name.partition(":")
    if colon:
        return base.lower(), param.strip()
    match = _STEPS_NAME.fullmatch(base.lower())
    return (match.group(1), match.group(2)) if match else (base.lower(), None)


@dataclass(frozen=True)
class AttackSpec:
    """One attack as written: its registry name and the settings the text gives (None: not given).

    ``options`` are (key, value) pairs sorted by key, for an immutable, comparable
    value; :attr:`option_dict` gives them as a dict. ``parse(s.format()) == s``.
    """

    name: str
    eps: float | None = None
    step_size: float | None = None
    restarts: int | None = None
    norm: str | None = None
    examples: int | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        _check(bool(self.name) and "@" not in self.name and self.name == self.name.strip(),
               f"attack spec name {self.name!r} must be a registry name such as pgd20")
        for what, value in (("eps", self.eps), ("step", self.step_size)):
            _check(value is None or (not isinstance(value, bool) and math.isfinite(value) and value >= 0),
                   f"{self.name}: {what} must be a finite number >= 0, got {value!r}")
        for what, value in (("restarts", self.restarts), ("n", self.examples)):
            _check(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                   f"{self.name}: {what} must be an integer >= 1, got {value!r}")
        _check(self.norm is None or self.norm in NORMS, f"{self.name}: unknown norm {self.norm!r} (known: {', '.join(NORMS)})")
        keys = [k for k, _ in self.options]
        _check(keys == sorted(set(keys)) and not set(keys) & {*KEYS, *_ALIASES},
               f"{self.name}: options must be distinct keys other than {', '.join(KEYS)}, sorted")

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        """The spec of ``name[@key=value...]``; one :class:`ClasswiseError` line for anything malformed."""
        name, *items = [t.strip() for t in str(text).split("@")]
        _check(bool(name), f"attack spec {text!r} has no attack name")
        values: dict[str, Any] = {}
        for item in items:
            key, sep, raw = item.partition("=")
            key, raw = _ALIASES.get(key.strip().lower(), key.strip().lower()), raw.strip()
            _check(bool(sep and key and raw), f"attack option {item!r} in {text!r} must look like key=value")
            _check(key not in values, f"{text!r} gives @{key}= twice")
            values[key] = _field_value(key, raw, text)
        return cls.of(name, values)

    @classmethod
    def of(cls, name: str, values: Mapping[str, Any]) -> AttackSpec:
        """A spec from its name and a mapping of keys (``eps``, ``step``, ``restarts``, ``norm``, ``n``, options)."""
        values = {_ALIASES.get(k, k): v for k, v in values.items()}
        options = tuple(sorted((k, v) for k, v in values.items() if k not in KEYS))
        return cls(name.strip(), values.get("eps"), values.get("step"), values.get("restarts"), values.get("norm"),
                   values.get("n"), options)

    def format(self) -> str:
        """The spec as text, keys in one order: eps, step, restarts, options by key, norm, n."""
        parts = [(k, v) for k, v in (("eps", self.eps), ("step", self.step_size), ("restarts", self.restarts))
                 if v is not None]
        parts += list(self.options) + [(k, v) for k, v in (("norm", self.norm), ("n", self.examples)) if v is not None]
        return "@".join([self.name, *(f"{k}={_format_value(v)}" for k, v in parts)])

    def __str__(self) -> str:
        return self.format()

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def base(self) -> str:
        """The registry base name: "pgd" of "pgd40", "tpgd" of "tpgd:5"."""
        return split_name(self.name)[0]

    @property
    def param(self) -> str | None:
        """The name's parameter: "40" of "pgd40", "5" of "tpgd:5"; None when absent."""
        return split_name(self.name)[1]

    def replace(self, **changes: Any) -> AttackSpec:
        """This spec with some fields changed (``options`` as a mapping or pairs)."""
        if isinstance(changes.get("options"), Mapping):
            changes["options"] = tuple(sorted(changes["options"].items()))
        return replace(self, **changes)


def _field_value(key: str, raw: str, text: str) -> Any:
    """The value of ``@key=raw`` in spec ``text``, checked for its key."""
    if key in ("eps", "step"):
        return parse_number(raw, f"{text}: {key}")
    if key == "norm":
        return raw.lower()
    value = parse_value(raw)
    if key in ("restarts", "n"):
        _check(isinstance(value, int) and not isinstance(value, bool), f"{text}: {key} must be an integer")
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return format_number(value) if isinstance(value, float) else str(value)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ClasswiseError(message)


__all__ = ["KEYS", "NORMS", "AttackSpec", "format_number", "number_from_text", "parse_number", "parse_value",
           "split_name"]
