"""Attacks declare their identity: facts() is the threat model, the class facts and the declared
settings, pinned per registry entry in tests/data/attack_facts.json, the same before and after a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from classwise.attacks import Attack, attack_names, create_attack
from classwise.attacks.registry import _REGISTRY

pytestmark = pytest.mark.usefixtures("one_thread")

GOLDEN = Path(__file__).parent / "data" / "attack_facts.json"
_LIBRARY = ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack")
_SPELLING = {"tpgd": "tpgd:5", "transfer": "transfer"}
_EPS = {"linf": 0.1, "l2": 0.5}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _cases() -> list[tuple[str, str, str | None]]:
    """(registry name, norm, backend) for every entry, every norm it exists for, every library backend."""
    backends = {name: ("autoattack", "torchattacks") if name in _LIBRARY else (None,) for name in attack_names()}
    return [(n, norm, b) for n in attack_names() for norm in _REGISTRY[n].norms for b in backends[n]]


def _case_id(name: str, norm: str, backend: str | None) -> str:
    return f"{_SPELLING.get(name, name)}@norm={norm}" + (f"@backend={backend}" if backend else "")


def _build(name: str, norm: str, backend: str | None, model: nn.Module) -> Attack:
    # building a library attack imports no package (its facts need none), so nothing is skipped
    kwargs = {"surrogate": _model()} if name == "transfer" else {"backend": backend} if backend else {}
    return create_attack(_SPELLING.get(name, name), model, _EPS[norm], norm=norm, **kwargs)


def test_golden_file_covers_every_registry_entry():
    assert sorted(json.loads(GOLDEN.read_text())) == sorted(_case_id(*c) for c in _cases())


@pytest.mark.parametrize("case", _cases(), ids=lambda c: _case_id(*c))
def test_facts_of_every_registry_entry_are_pinned(case):
    facts = _build(*case, _model()).facts()
    assert facts == json.loads(GOLDEN.read_text())[_case_id(*case)]
    assert not any(k.startswith("_") for k in facts)


@pytest.mark.parametrize("name", ["pgd", "fgsm-rs", "transfer", "fmn", "cw-margin", "tpgd"])
def test_facts_are_the_same_before_and_after_a_run(name):
    attack = _build(name, "linf", None, _model())
    before = attack.facts()
    attack(torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(0))
    assert attack.facts() == before
    if name == "transfer":
        assert attack._fits  # its first call set private state, which the facts never show


def test_private_or_non_scalar_settings_cannot_be_declared():
    with pytest.raises(TypeError, match="private attributes"):
        type("Leaky", (Attack,), {"identity": ("_cache",), "perturb": lambda self, x, y, g: x})
    odd = type("Odd", (Attack,), {"identity": ("model",), "perturb": lambda self, x, y, g: x})
    with pytest.raises(TypeError, match="non-scalar settings"):
        odd(_model(), create_attack("pgd", _model(), 0.1).threat).facts()
