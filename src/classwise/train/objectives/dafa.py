"""DAFA (Lee, Lee, Kim, ICLR 2024): distance-aware class weights and margins for TRADES."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from ...models import unwrap
from .base import training_attack
from .fair import FairObjective, scaled_kl_attack
from .trades import kl_rows


def dafa_weights(similarity: torch.Tensor, lam: float) -> torch.Tensor:
    """Class weights (K,) from the class similarity p (K, K), p_ij the mean probability of class j
    on class i's adversarial examples (reference ``calculate_class_weights``).

    ``W_i = 1 + lam * sum_{j != i} s_ij * p_ij * p_jj`` with s_ij = +1 when class i is
    harder than j (p_ii < p_jj), else -1: a hard class takes weight from the classes it
    is confused with, in proportion to how often it is mistaken for them (the paper's
    class-weight rule as the reference computes it: times p_jj, ties counted as "easier").
    """
    diag = similarity.diagonal()
    sign = torch.where(diag[:, None] < diag[None, :], 1.0, -1.0).to(similarity.dtype)  # (K, K), row i vs column j
    terms = sign * similarity * diag[None, :]
    terms.fill_diagonal_(0)
    return 1 + lam * terms.sum(1)


def dafa_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                beta: float) -> torch.Tensor:
    """``W_y * CE(f(x), y) + beta * KL(f(x) || f(x'))`` per example (B,) (reference trades_loss: the KL unweighted)."""
    return weights[y] * F.cross_entropy(clean_logits, y, reduction="none") + beta * kl_rows(clean_logits, adv_logits)


class DAFA(FairObjective):
    """DAFA on TRADES: after ``cfg.fair.dafa_warmup`` epochs of TRADES, fixed class weights W (K,)
    weigh each example's clean cross-entropy and scale its attack radius and step (eps * W_y).

    Paper: Lee, Lee, Kim, "DAFA: Distance-Aware Fair Adversarial Training",
    ICLR 2024; reference code rucy74/DAFA (utils.py,
    losses.py; CIFAR-10 defaults lambda 1.0, warm-up 70 of 110 epochs). W is
    computed once, before 0-based epoch ``dafa_warmup`` (:func:`dafa_weights`).

    Deviation: the reference averages the adversarial softmax over the training
    batches of the last warm-up epoch (the model changing as it goes); here it is
    measured on the held-out validation split with the model at the end of the
    warm-up, under the TRADES KL attack (fixed noise), so the weights are
    reproducible and no training example judges itself.

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.dafa: torch.Tensor | None = None  # (K,) class weights, None during the warm-up

    def update(self, epoch: int, model: nn.Module) -> None:
        if epoch == self.cfg.fair.dafa_warmup:
            self.dafa = dafa_weights(self.measure(model, kl=True).similarity, self.cfg.fair.dafa_lambda)

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec, w = training_attack(self.cfg.attack, model, eps), self.dafa
        scale = None if w is None else w[y]
        x_adv = scaled_kl_attack(unwrap(model), x, spec.threat, getattr(spec, "steps", 1), generator, scale, scale)
        clean_logits, adv_logits = model(x), model(x_adv)
        if w is None:  # warm-up: TRADES
            w = torch.ones(clean_logits.shape[1], device=x.device)
        return dafa_losses(clean_logits, adv_logits, y, w, self.cfg.beta), adv_logits

    def epoch_metrics(self) -> dict:
        extra = {} if self.dafa is None else {"dafa_weights": [round(v, 4) for v in self.dafa.tolist()]}
        return super().epoch_metrics() | extra

    def state_dict(self) -> dict:
        return super().state_dict() | {"dafa_weights": self.dafa}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.dafa = state.get("dafa_weights")
