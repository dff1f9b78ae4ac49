"""Optimisers, learning-rate schedules and the eps warm-up."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam (the quick demo); weight decay on all weights."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Step decay: lr multiplied by ``gamma`` at each milestone epoch (stepped per epoch)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)


def warmup_eps(cfg: TrainConfig, epoch: int, batch: int, num_batches: int) -> float:
    """Training eps at (0-based) ``epoch`` and ``batch``: linear ramp over warm-up epochs."""
    if cfg.eps_warmup_epochs <= 0:
        return cfg.attack.eps
    done = (epoch * num_batches + batch + 1) / (cfg.eps_warmup_epochs * num_batches)
    return cfg.attack.eps * min(1.0, done)
