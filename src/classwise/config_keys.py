"""Every ``--set`` key with its type, default and meaning, read from the config dataclasses.

``classwise config-keys`` prints them; nothing is typed twice: the keys and
types are the dataclass fields, the defaults their defaults, and the meaning
the sentence of the dataclass's docstring that names the field (else the
docstring's first line).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Any

from .config import RunConfig


@dataclass(frozen=True)
class ConfigKey:
    """One ``--set`` key: ``train.attack.eps``, its type as written in the config, default and meaning."""

    key: str
    type: str
    default: str
    meaning: str


def config_keys(config: Any = None, prefix: str = "") -> list[ConfigKey]:
    """Every leaf key of ``config`` (default: ``RunConfig()``), nested dataclasses walked, in field order.

    Defaults are the values in the default config (a nested default such as
    the training attack's step size is the one ``RunConfig()`` holds).
    """
    config = RunConfig() if config is None else config
    cls = type(config)
    hints = typing.get_type_hints(cls)
    keys: list[ConfigKey] = []
    for f in dataclasses.fields(cls):
        tp, key, value = hints[f.name], f"{prefix}{f.name}", getattr(config, f.name)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            keys += config_keys(value, f"{key}.")
        else:
            keys.append(ConfigKey(key, _type_text(tp), _value_text(value), _meaning(cls, f.name)))
    return keys


def _type_text(tp: Any) -> str:
    """``int | None`` -> "int or null"; tuples of dataclasses -> "list of mappings"."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    nullable = type(None) in typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        inner = args[0] if args else Any
        text = f"list of {'mappings' if dataclasses.is_dataclass(inner) else getattr(inner, '__name__', 'values')}"
    elif nullable and len(args) == 1:
        text = _type_text(args[0])
    else:
        text = getattr(tp, "__name__", str(tp).replace("typing.", ""))
    return f"{text} or null" if nullable else text


def _value_text(value: Any) -> str:
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        from .config import to_dict

        value = to_dict(value)
    if isinstance(value, tuple):
        value = list(value)
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _meaning(cls: type, name: str) -> str:
    """The docstring sentence of ``cls`` that names ``name`` as ``name``; else its first line."""
    doc = " ".join((cls.__doc__ or "").split())
    for sentence in re.split(r"(?<=\.)\s+(?=[A-Z`])", doc):
        if f"``{name}``" in sentence:
            return sentence.replace("``", "")
    return doc.split(". ")[0].rstrip(".").replace("``", "") + "." if doc else ""
