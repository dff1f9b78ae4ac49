"""Training objectives, one per module, behind a registry and a factory.

``create_objective(cfg)`` builds ``OBJECTIVES[cfg.method]``; the loop calls
``objective.begin_epoch(epoch, model, x, y)`` before each epoch and
``objective(model, x, y, eps, generator) -> (loss, logits)`` per batch
(x (B, C, H, W) in [0, 1], y (B,), logits (B, K)).

Methods: standard, pgd-at (Madry et al. 2018), fgsm-rs (Wong et al. 2020),
trades (Zhang et al. 2019), mart (Wang et al. 2020), he (Pang et al. 2020),
he-lis and he-cmp (appendix G of the paper). The class-wise defences of
``defences`` (weight-norm penalty, class weights) work with all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...config import TrainConfig
from ...errors import ClasswiseError, unknown_name
from .base import Objective, training_attack
from .fgsm_rs import FGSMRS
from .he import HE
from .he_cmp import HECMP
from .he_lis import HELIS
from .mart import MART
from .pgd_at import PGDAT
from .standard import Standard
from .trades import TRADES

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
})

__all__ = ["OBJECTIVES", "Objective", "create_objective", "training_attack"]


def create_objective(cfg: TrainConfig) -> Objective:
    """The objective named by ``cfg.method``, configured by ``cfg``."""
    if cfg.method not in OBJECTIVES:
        raise unknown_name("training method", cfg.method, OBJECTIVES)
    return OBJECTIVES[cfg.method](cfg)
