"""Training objectives, one per module, behind a registry and a factory.

``create_objective(cfg, model_cfg)`` checks the method's rules and builds ``OBJECTIVES[cfg.method]``; the loop calls
``objective.begin_epoch(epoch, model, x, y)`` before each epoch and
``objective(model, x, y, eps, generator) -> (loss, logits)`` per batch and
``objective.end_epoch(epoch, model)`` after each epoch
(x (B, C, H, W) in [0, 1], y (B,), logits (B, K)).

Methods: standard, pgd-at (Madry et al. 2018), fgsm-rs (Wong et al. 2020),
trades (Zhang et al. 2019), mart (Wang et al. 2020), he (Pang et al. 2020),
he-lis and he-cmp (appendix G of the paper), and the robust-fairness methods
frl (Xu et al. 2021), dafa (Lee et al. 2024), wat (Li & Liu 2023) and cfa
(Wei et al. 2023) with their validation split (``fair``). The class-wise
defences of ``defences`` (weight-norm penalty, class weights) work with all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...config import ModelConfig, TrainConfig
from ...errors import ClasswiseError, unknown_name
from .base import Objective, training_attack
from .cfa import CFA
from .dafa import DAFA
from .fgsm_rs import FGSMRS
from .frl import FRL
from .he import HE
from .he_cmp import HECMP
from .he_lis import HELIS
from .mart import MART
from .pgd_at import PGDAT
from .standard import Standard
from .trades import TRADES
from .wat import WAT

# Read-only: TrainConfig.method -> objective class.
OBJECTIVES: Mapping[str, type[Objective]] = MappingProxyType({
    "standard": Standard,
    "pgd-at": PGDAT,
    "fgsm-rs": FGSMRS,
    "trades": TRADES,
    "mart": MART,
    "he": HE,
    "he-lis": HELIS,
    "he-cmp": HECMP,
    "frl": FRL,
    "dafa": DAFA,
    "wat": WAT,
    "cfa": CFA,
})

__all__ = ["OBJECTIVES", "Objective", "check_method", "create_objective", "training_attack"]


def check_method(cfg: TrainConfig, model: ModelConfig | None = None) -> type[Objective]:
    """The objective class of ``cfg.method``, after checking the method's rules (head with ``model``, attack)."""
    if cfg.method not in OBJECTIVES:
        raise unknown_name("training method", cfg.method, OBJECTIVES)
    cls = OBJECTIVES[cfg.method]
    if model is not None and cls.requires_head is not None and model.head.name != cls.requires_head:
        raise ClasswiseError(f"train.method {cfg.method} needs model.head.name: {cls.requires_head} "
                             f"(got {model.head.name})")
    if cls.requires_attack is not None and cfg.attack.name != cls.requires_attack:
        raise ClasswiseError(f"train.method {cfg.method} needs train.attack.name {cls.requires_attack}, "
                             f"got '{cfg.attack.name}'")
    return cls


def create_objective(cfg: TrainConfig, model: ModelConfig | None = None) -> Objective:
    """The objective named by ``cfg.method``, configured by ``cfg`` (rules checked for ``model``)."""
    return check_method(cfg, model)(cfg)
