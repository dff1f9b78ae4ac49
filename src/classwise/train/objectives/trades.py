"""TRADES (Zhang et al., ICML 2019): clean cross-entropy plus a KL robustness term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks import Threat, eval_mode, grad_and_logits
from ...models import unwrap
from .base import Objective, training_attack

START_STD = 0.001  # reference: x' starts at x + 0.001 * N(0, I)


def kl_rows(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(clean) || softmax(adv))`` per row: (B, K), (B, K) -> (B,).

    As the reference's ``nn.KLDivLoss(size_average=False)(log_softmax(adv),
    softmax(clean))`` before its division by the batch size; gradients flow
    into both arguments, as there.
    """
    return F.kl_div(F.log_softmax(adv_logits, 1), F.softmax(clean_logits, 1), reduction="none").sum(1)


def trades_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """``CE(f(x), y) + beta * KL(f(x) || f(x'))`` per example (B,); its mean is the reference loss."""
    return F.cross_entropy(clean_logits, y, reduction="none") + beta * kl_rows(clean_logits, adv_logits)


def _kl_sum(logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, 1), clean_probs, reduction="sum")


def kl_attack(
    model: nn.Module, x: torch.Tensor, threat: Threat, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """x' maximising ``KL(f(x) || f(x'))`` by ``steps`` threat steps from x + 0.001 N(0, I).

    Steps and projection are the threat's (signed under L-inf, L2-normalised under L2).

    Runs in eval mode (mode restored). x (B, C, H, W) in [0, 1] -> x' (B, C, H, W), detached.
    """
    with eval_mode(model):
        with torch.no_grad():
            clean_probs = F.softmax(model(x), 1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = threat.project(x + START_STD * noise, x)
        for _ in range(steps):
            grad, _ = grad_and_logits(model, x_adv, clean_probs, _kl_sum)
            x_adv = threat.step(x_adv, grad, x)
    return x_adv.detach()


class TRADES(Objective):
    """TRADES: ``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))``, default beta 6.

    Paper: Zhang et al., "Theoretically Principled Trade-off between Robustness
    and Accuracy", ICML 2019 (reference code: yaodongyu/TRADES, trades.py).
    x' maximises the KL term (:func:`kl_attack`) with the eps, step size and
    step count of ``cfg.attack`` (e.g. pgd10: 10 steps of 0.007, eps 0.031).

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = training_attack(self.cfg.attack, model, eps)
        x_adv = kl_attack(unwrap(model), x, spec.threat, getattr(spec, "steps", 1), generator)  # no DDP hooks
        clean_logits, adv_logits = model(x), model(x_adv)
        return trades_losses(clean_logits, adv_logits, y, self.cfg.beta), adv_logits
