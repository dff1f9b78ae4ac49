"""MART (Wang et al., ICLR 2020): misclassification-aware adversarial training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks.losses import true_class_mask
from .base import Objective, training_attack


def boosted_ce(adv_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE of the reference: ``CE(f(x'), y) - log(1.0001 - p'_{j*} + 1e-12)`` per example (B,).

    j* is the most probable wrong class of the adversarial softmax p'.
    """
    probs = F.softmax(adv_logits, 1)
    wrong = probs.masked_fill(true_class_mask(y, probs.shape[1]), float("-inf")).argmax(1)  # (B,)
    margin = -torch.log(1.0001 - probs.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
    return F.cross_entropy(adv_logits, y, reduction="none") + margin


def mart_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """``BCE(f(x'), y) + beta * KL(p || p') * (1 - p_y)`` per example (B,); its mean is the reference loss.

    p = softmax f(x), p' = softmax f(x'); KL and the weights as reference mart.py
    computes them (log(p' + 1e-12), weight 1.0000001 - p_y).
    """
    clean_probs, adv_probs = F.softmax(clean_logits, 1), F.softmax(adv_logits, 1)
    kl = F.kl_div(torch.log(adv_probs + 1e-12), clean_probs, reduction="none").sum(1)
    true_prob = clean_probs.gather(1, y[:, None]).squeeze(1)
    return boosted_ce(adv_logits, y) + beta * kl * (1.0000001 - true_prob)


class MART(Objective):
    """MART, default beta 6: boosted CE on x' plus a KL term weighted by (1 - p_y(x)).

    Paper: Wang, Zou, Yi, Bailey, Ma, Gu, "Improving Adversarial Robustness
    Requires Revisiting Misclassified Examples", ICLR 2020 (reference code:
    YisenWang/MART, mart.py). x' is the CE attack of ``cfg.attack``, started
    uniformly in the ball (the reference starts at x + 0.001 N(0, I)).

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = training_attack(self.cfg.attack, model, eps)(x, y, generator)
        clean_logits, adv_logits = model(x), model(x_adv)
        return mart_losses(clean_logits, adv_logits, y, self.cfg.beta), adv_logits
