"""FRL (Xu et al., ICML 2021): Fair-Robust-Learning, re-weighting and re-margining TRADES by class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from ...models import unwrap
from .base import training_attack
from .fair import ClassStats, FairObjective, scaled_kl_attack
from .trades import kl_rows

EPS_SCALE_RANGE = (0.98, 2.5)  # reference cost_sensitive: clamp(exp(2 lambda_eps), 0.98, 2.5)


def cap_sum(lam: torch.Tensor, lim: float) -> torch.Tensor:
    """Reference ``normalize_lambda``: clamp at 0, then scale to sum ``lim`` when the sum exceeds it. (K,) -> (K,)."""
    lam = lam.clamp(min=0)
    total = lam.sum()
    return torch.where(total > lim, lim * lam / total, lam)


def frl_update(lam: torch.Tensor, stats: ClassStats, tau_nat: float, tau_bndy: float, rate: float,
               rate_eps: float, lim: float) -> torch.Tensor:
    """One FRL multiplier update (the paper's Lagrangian step, as reference ``frl_train``). lam (3, K) -> (3, K).

    Rows: lambda_nat, lambda_bndy, lambda_eps. With phi_nat(c), phi_bndy(c) the
    class-wise clean and boundary errors and R_nat, R_bndy their overall values on
    the validation split, gamma_nat = phi_nat - R_nat - tau_nat and
    gamma_bndy = phi_bndy - R_bndy - tau_bndy (the fairness constraints' violations);
    lambda_nat += rate * gamma_nat, lambda_bndy += 2 rate * gamma_bndy (each then
    clamped at 0 and capped to sum ``lim``), lambda_eps += rate_eps * gamma_bndy.
    """
    n = stats.count.sum().clamp(min=1)
    overall_nat = 1 - stats.clean_correct.sum() / n
    overall_bndy = (stats.clean_correct.sum() - stats.adv_correct.sum()) / n
    gamma_nat = stats.clean_error - overall_nat - tau_nat
    gamma_bndy = stats.boundary_error - overall_bndy - tau_bndy
    return torch.stack([cap_sum(lam[0] + rate * gamma_nat, lim), cap_sum(lam[1] + 2 * rate * gamma_bndy, lim),
                        lam[2] + rate_eps * gamma_bndy])


def frl_weights(lam: torch.Tensor) -> torch.Tensor:
    """Reference ``cost_sensitive``: (3, K) multipliers -> (3, K) = (w_nat, w_bndy, eps scale).

    ``w_c = 1/K + lambda_c - mean(lambda)`` for the two loss terms (positive while
    sum(lambda) < 1), ``clamp(exp(2 lambda_eps_c), 0.98, 2.5)`` for the radius.
    """
    k = lam.shape[1]
    w = 1.0 / k + lam[:2] - lam[:2].mean(1, keepdim=True)
    return torch.cat([w, lam[2:].mul(2).exp().clamp(*EPS_SCALE_RANGE)])


def frl_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               beta: float) -> torch.Tensor:
    """Per-example losses (B,) whose mean is the reference loss
    ``sum_i w_nat[y_i] CE_i / sum_i w_nat[y_i] + beta * sum_i w_bndy[y_i] KL_i / sum_i w_bndy[y_i]``."""
    w_nat, w_bndy = weights[0][y], weights[1][y]
    ce = F.cross_entropy(clean_logits, y, reduction="none")
    return len(y) * (w_nat * ce / w_nat.sum() + beta * w_bndy * kl_rows(clean_logits, adv_logits) / w_bndy.sum())


class FRL(FairObjective):
    """FRL-Reweight + Remargin on TRADES (loss and attack weighted by class).

    Paper: Xu, Liu, Li, Jain, Tang, "To be Robust or to be Fair: Towards Fairness
    in Adversarial Training", ICML 2021 (FRL-Reweight and -Remargin); reference
    code hannxu123/fair_robust (frlrmrw.py, utils_frl2.py), whose update rules and
    defaults (``cfg.fair``: tau 0.1 / 0.1, rates 0.05 / 0.1, cap 0.5, rate halved
    every 40 epochs) are followed: at the start of every epoch the multipliers
    are updated from the class-wise clean and boundary errors on the validation
    split (:func:`frl_update`), and the epoch trains on
    ``sum w_nat CE / sum w_nat + beta * sum w_bndy KL / sum w_bndy`` with x' the
    KL attack of radius ``eps * clamp(exp(2 lambda_eps), 0.98, 2.5)`` per class
    (:func:`frl_weights`, :func:`frl_losses`). ``cfg.fair.frl_rate_eps = 0``
    gives FRL-Reweight alone.

    Deviations: the reference fine-tunes a pre-trained ("hot start") model with
    lr 0.001; here the method trains under the run's schedule (start from a
    trained model by setting the recipe accordingly). Its validation errors use
    PGD-20; here the training attack ``cfg.attack`` (CE, random start).

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.lam: torch.Tensor | None = None  # (3, K) multipliers: nat, bndy, eps
        self.frl: torch.Tensor | None = None  # (3, K) their weights (frl_weights)

    def update(self, epoch: int, model: nn.Module) -> None:
        f, stats = self.cfg.fair, self.measure(model, kl=False)
        lam = torch.zeros(3, len(stats.count), device=stats.count.device) if self.lam is None else self.lam
        rate = f.frl_rate / 2 ** ((epoch + 1) // f.frl_rate_halving)  # reference: halved when epoch % 40 == 0 (1-based)
        self.lam = frl_update(lam, stats, f.frl_tau_nat, f.frl_tau_bndy, rate, f.frl_rate_eps, f.frl_lim)
        self.frl = frl_weights(self.lam)

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec, weights = training_attack(self.cfg.attack, model, eps), self.frl
        scale = None if weights is None or self.cfg.fair.frl_rate_eps == 0 else weights[2][y]
        x_adv = scaled_kl_attack(unwrap(model), x, spec.threat, getattr(spec, "steps", 1), generator, scale)
        clean_logits, adv_logits = model(x), model(x_adv)
        if weights is None:  # before the first update: TRADES (all multipliers 0)
            weights = frl_weights(torch.zeros(3, clean_logits.shape[1], device=x.device))
        return frl_losses(clean_logits, adv_logits, y, weights, self.cfg.beta), adv_logits

    def epoch_metrics(self) -> dict:
        if self.frl is None:
            return super().epoch_metrics()
        w = [[round(v, 4) for v in row] for row in self.frl.tolist()]
        return super().epoch_metrics() | {"frl_w_nat": w[0], "frl_w_bndy": w[1], "frl_eps_scale": w[2]}

    def state_dict(self) -> dict:
        return super().state_dict() | {"frl_lambda": self.lam}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.lam = state.get("frl_lambda")
        self.frl = None if self.lam is None else frl_weights(self.lam)
