"""Attacks under the L-inf threat model, with a registry and a factory.

``create_attack("pgd20", model, eps=8 / 255)`` is how the CLI and the tests
build attacks; ``attack_names()`` lists the registered base names and
``attack_usage()`` how each is written ("pgd[K]", "tpgd:X", "transfer:PATH"...).
"""

from __future__ import annotations

from .base import Attack, eval_mode, input_grad
from .cw_inf import CWInf
from .cw_margin import CWMarginPGD
from .fgsm import FGSM
from .library import (
    APGDCE, APGDT, FABT, AutoAttack, Square, TorchattacksAPGDCE, TorchattacksAPGDT, TorchattacksAutoAttack,
    TorchattacksFABT, TorchattacksSquare,
)
from .losses import cross_entropy, cw_margin, cw_margins, loss_names, make_loss
from .nattack import NAttack
from .pgd import PGD, grad_and_logits
from .registry import (
    DEFAULT_PGD_STEPS, attack_default_per_class, attack_is_black_box, attack_names, attack_usage, create_attack, parse_spec,
)
from .threat import LinfThreat
from .tpgd import PAPER_INV_TEMPERATURES, TemperaturePGD, relative_robustness, temperature_sweep, tpgd_name
from .transfer import Transfer, load_surrogate

__all__ = [
    "Attack", "LinfThreat", "FGSM", "PGD", "CWInf", "CWMarginPGD", "TemperaturePGD", "NAttack",
    "Transfer", "APGDCE", "APGDT", "FABT", "Square", "AutoAttack", "TorchattacksAPGDCE", "TorchattacksAPGDT",
    "TorchattacksFABT", "TorchattacksSquare", "TorchattacksAutoAttack",
    "create_attack", "attack_names", "attack_usage", "attack_default_per_class", "attack_is_black_box", "parse_spec",
    "DEFAULT_PGD_STEPS", "PAPER_INV_TEMPERATURES", "temperature_sweep", "relative_robustness", "tpgd_name",
    "load_surrogate", "eval_mode", "input_grad", "grad_and_logits", "cross_entropy", "cw_margin",
    "cw_margins", "loss_names", "make_loss",
]
