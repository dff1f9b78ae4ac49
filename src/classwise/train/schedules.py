"""Optimisers, learning-rate schedules, the eps warm-up and temperature schedules."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam (the quick demo; ``momentum`` is its beta1, 0.9 by default as
    Kingma & Ba 2015); weight decay on all weights."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule of ``cfg.schedule``.

    "step": lr x ``gamma`` at each milestone epoch, stepped once per epoch.
    "cyclic" and "piecewise": :func:`lr_at` of the fractional epoch
    ``step / steps_per_epoch``, stepped once per batch (:func:`per_batch`).
    """
    if not per_batch(cfg):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)

    def factor(step: int) -> float:
        return lr_at(cfg, step / steps_per_epoch) / cfg.lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def per_batch(cfg: TrainConfig) -> bool:
    """True when the scheduler steps after every batch (cyclic, piecewise)."""
    return cfg.schedule != "step"


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at fractional epoch ``epoch`` for the per-batch schedules.

    "cyclic" (Wong et al., "Fast is better than free", ICLR 2020): linear from
    0 up to ``cfg.lr`` at half the epochs, back to 0 at the end. "piecewise":
    linear interpolation through (``lr_epochs``, ``lr_values``), held constant
    outside (the ImageNet recipe of the same paper).
    """
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    if cfg.schedule == "cyclic":
        xs, ys = (0.0, cfg.epochs / 2, float(cfg.epochs)), (0.0, cfg.lr, 0.0)
    else:
        xs, ys = cfg.lr_epochs, cfg.lr_values
    return float(np.interp(epoch, xs, ys))


def warmup_eps(cfg: TrainConfig, epoch: int, batch: int, num_batches: int) -> float:
    """Training eps at (0-based) ``epoch`` and ``batch``: linear ramp over warm-up epochs."""
    if cfg.eps_warmup_epochs <= 0:
        return cfg.attack.eps
    done = (epoch * num_batches + batch + 1) / (cfg.eps_warmup_epochs * num_batches)
    return cfg.attack.eps * min(1.0, done)


def lis_scale(epoch: int, epochs: int, start: float, end: float) -> float:
    """HE-LIS s = 1/T at 0-based ``epoch`` (appendix G, equation 5).

    Linear from ``start`` at the first epoch to ``end`` at the last one:
    ``start + epoch / (epochs - 1) * (end - start)``.
    """
    if epochs <= 1:
        return end
    return start + min(epoch, epochs - 1) / (epochs - 1) * (end - start)


def cmp_target(epoch: int, epochs: int, start: float, end: float, ramp: float) -> float:
    """HE-CMP target of the maximum probability at 0-based ``epoch`` (equation 6).

    ``start + epoch / n_FI * (end - start)`` for ``epoch < n_FI``, then ``end``,
    with ``n_FI = max(1, round(ramp * epochs))`` (90 of 100 epochs in the paper).
    """
    n_fi = max(1, round(ramp * epochs))
    return end if epoch >= n_fi else start + epoch / n_fi * (end - start)
