"""Attacks under the L-inf and L2 threat models, with a registry and a factory.

``create_attack("pgd20", model, eps=8 / 255)`` is how the CLI and the tests
build attacks; ``attack_names()`` lists the registered base names and
``attack_usage()`` how each is written ("pgd[K]", "tpgd:X", "transfer:PATH"...).
"""

from __future__ import annotations

from .base import Attack, eval_mode, input_grad
from .cw_inf import CWInf
from .custom import CustomAttack, is_torchattacks
from .cw_margin import CWMarginPGD
from .fgsm import FGSM
from .fmn import FMN
from .library import (
    APGDCE, APGDT, FABT, AutoAttack, Square, TorchattacksAPGDCE, TorchattacksAPGDT, TorchattacksAutoAttack,
    TorchattacksFABT, TorchattacksSquare,
)
from .losses import cross_entropy, cw_margin, cw_margins, loss_names, make_loss
from .nattack import NAttack
from .pgd import PGD, TARGET_MODES, check_target, grad_and_logits
from .registry import (
    DEFAULT_PGD_STEPS, attack_default_per_class, attack_is_black_box, attack_names, attack_usage, build_attack,
    create_attack, parse_spec,
)
from .threat import NORMS, L2Threat, LinfThreat, Threat, check_norm, make_threat
from .tpgd import PAPER_INV_TEMPERATURES, TemperaturePGD, tpgd_name
from .transfer import Transfer

__all__ = [
    "Attack", "LinfThreat", "L2Threat", "Threat", "NORMS", "make_threat", "check_norm", "FGSM", "FMN", "PGD", "CWInf",
    "CWMarginPGD", "TemperaturePGD", "NAttack", "Transfer", "CustomAttack", "is_torchattacks", "APGDCE", "APGDT",
    "FABT", "Square", "AutoAttack", "TorchattacksAPGDCE", "TorchattacksAPGDT", "TorchattacksFABT", "TorchattacksSquare",
    "TorchattacksAutoAttack",
    "build_attack", "create_attack", "attack_names", "attack_usage", "attack_default_per_class", "attack_is_black_box",
    "parse_spec", "DEFAULT_PGD_STEPS", "PAPER_INV_TEMPERATURES", "tpgd_name", "eval_mode", "input_grad",
    "grad_and_logits", "cross_entropy", "cw_margin", "cw_margins", "loss_names", "make_loss",
    "TARGET_MODES", "check_target",
]

# Our APGD, the strong cascade and the cost meter of evaluations.
from .apgd import APGD  # noqa: E402
from .cost import CostMeter  # noqa: E402
from .strong import Strong  # noqa: E402

__all__ += ["APGD", "Strong", "CostMeter"]
