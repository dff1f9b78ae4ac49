"""WAT (Li & Liu, AAAI 2023): worst-class adversarial training, class weights from a Hedge game."""

from __future__ import annotations

import torch
from torch import nn

from ...config import TrainConfig
from ...models import unwrap
from .base import training_attack
from .trades import kl_attack, trades_losses
from .fair import FairObjective


def hedge_weights(cumulative_cost: torch.Tensor, eta: float) -> torch.Tensor:
    """Hedge (exponential weights) over K + 1 experts: ``K * exp(eta * C_c) / sum_c' exp(eta * C_c')``.

    cumulative_cost (K + 1,): each class's validation cost summed over the epochs
    so far, the last entry the average class's. (K + 1,) weights summing to K
    (computed as a softmax: the same values, no overflow).
    """
    k = len(cumulative_cost) - 1
    return k * torch.softmax(eta * cumulative_cost, 0)


def wat_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
               beta: float) -> torch.Tensor:
    """``(w_y + w_K) * (CE + beta * KL)`` per example (B,): the class-weighted TRADES loss plus the
    average expert's share (reference: weighted class sums / B + w_K * mean TRADES loss)."""
    return (weights[y] + weights[-1]) * trades_losses(clean_logits, adv_logits, y, beta)


class WAT(FairObjective):
    """WAT on TRADES: each epoch's per-class loss weights come from a no-regret game on a validation split.

    Paper: Li & Liu, "WAT: Improve the Worst-class Robustness in Adversarial
    Training", AAAI 2023; reference code (worst-class adversarial
    training script, default eta 0.1): the experts are the K classes and the
    average class; after every epoch each expert's cost is its mean TRADES loss
    ``CE + beta * KL`` on the validation split under the TRADES attack, costs are
    summed over epochs and the weights are :func:`hedge_weights` (all 1 in the
    first epoch, as the reference); the loss is :func:`wat_losses`.

    Here the update runs at the start of the next epoch (the same model, so the
    same weights as the reference's end-of-epoch update); the validation attack's
    noise is fixed (the reference draws fresh noise).

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.cost: torch.Tensor | None = None  # (K + 1,) cumulative validation costs
        self.wat: torch.Tensor | None = None  # (K + 1,) weights; None: all 1

    def update(self, epoch: int, model: nn.Module) -> None:
        if epoch == 0:
            return
        stats = self.measure(model, kl=True)
        cost = torch.cat([stats.mean_loss, (stats.loss_sum.sum() / stats.count.sum().clamp(min=1))[None]])
        self.cost = cost if self.cost is None else self.cost + cost
        self.wat = hedge_weights(self.cost, self.cfg.fair.wat_eta)

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = training_attack(self.cfg.attack, model, eps)
        x_adv = kl_attack(unwrap(model), x, spec.threat, getattr(spec, "steps", 1), generator)
        clean_logits, adv_logits = model(x), model(x_adv)
        w = torch.ones(clean_logits.shape[1] + 1, device=x.device) if self.wat is None else self.wat
        return wat_losses(clean_logits, adv_logits, y, w, self.cfg.beta), adv_logits

    def epoch_metrics(self) -> dict:
        extra = {} if self.wat is None else {"wat_weights": [round(v, 4) for v in self.wat.tolist()]}
        return super().epoch_metrics() | extra

    def state_dict(self) -> dict:
        return super().state_dict() | {"wat_cost": self.cost}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.cost = state.get("wat_cost")
        self.wat = None if self.cost is None else hedge_weights(self.cost, self.cfg.fair.wat_eta)
