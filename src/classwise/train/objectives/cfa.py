"""CFA (Wei, Wang, Guo, Wang, CVPR 2023): class-wise calibrated margins and regularisation, and
fairness-aware weight averaging, on TRADES."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...config import TrainConfig
from ...models import unwrap
from .base import training_attack
from .fair import FairObjective, scaled_kl_attack
from .trades import kl_rows


def ccm_scale(robust: torch.Tensor, lam: float) -> torch.Tensor:
    """CCM radius scales (K,): ``eps_y = (lambda_1 + t_y) * eps``, t (K,) the classes' robust accuracy in [0, 1]."""
    return lam + robust


def ccr_weight(robust: torch.Tensor, lam: float, beta: float) -> torch.Tensor:
    """CCR weights (K,) of the KL term: ``b_y = beta_y / (1 + beta_y)`` with ``beta_y = (lambda_2 + t_y) * beta``.

    TRADES written as ``(1 - b) CE + b KL``, b = beta / (1 + beta) (the reference's form), with
    a class-wise beta: a more robust class (larger t_y) leans more on the robust (KL) term.
    """
    b = (lam + robust) * beta
    return b / (1 + b)


def cfa_losses(clean_logits: torch.Tensor, adv_logits: torch.Tensor, y: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:
    """``(1 - b_y) * CE(f(x), y) + b_y * KL(f(x) || f(x'))`` per example (B,), b (K,) (reference cw_trades_loss)."""
    b = weights[y]
    return (1 - b) * F.cross_entropy(clean_logits, y, reduction="none") + b * kl_rows(clean_logits, adv_logits)


def fawa_update(average: dict[str, torch.Tensor] | None, weights: dict[str, torch.Tensor],
                decay: float) -> dict[str, torch.Tensor]:
    """One FAWA step: ``average * decay + weights * (1 - decay)`` entry by entry (reference ``weight_average``).

    ``average`` None: a copy of ``weights`` (the first epoch that enters). Floating-point
    entries (weights, BatchNorm statistics) are averaged; integer ones (BatchNorm's batch
    counter) are copied from ``weights``. Returns new tensors; the inputs are left alone.
    """
    if average is None:
        return {k: v.detach().clone() for k, v in weights.items()}
    return {k: (average[k] * decay + v.detach() * (1 - decay)) if v.is_floating_point() else v.detach().clone()
            for k, v in weights.items()}


class CFA(FairObjective):
    """CFA on TRADES: class-wise radius (CCM) and KL weight (CCR) from each class's robust training
    accuracy, and a weight average (FAWA) of the epochs whose worst class passes a threshold.

    Paper: Wei, Wang, Guo, Wang, "CFA: Class-Wise Calibrated Fair Adversarial Training",
    CVPR 2023, section 4 (Class-wise Calibrated Margin, Class-wise Calibrated
    Regularization, Fairness Aware Weight Average); reference code PKU-ML/CFA
    (train.py, attack.py, utils.py), whose rules and defaults (``cfg.fair``:
    lambda_1 = lambda_2 = 0.5, start at epoch 10, decay 0.88, threshold 0.24) are followed.
    With t_y class y's robust accuracy on its training examples in the previous epoch
    (the adversarial examples trained on, as the reference's ``CW_log``), from 0-based
    epoch ``cfa_begin`` on:

    - CCM: x' maximises TRADES's KL within ``eps_y = (lambda_1 + t_y) * eps``
      (:func:`ccm_scale`; the step size is not scaled, as ``cw_trades_loss``);
    - CCR: the loss is ``(1 - b_y) CE + b_y KL``, ``b_y = beta_y / (1 + beta_y)``,
      ``beta_y = (lambda_2 + t_y) * beta`` (:func:`ccr_weight`, :func:`cfa_losses`);
      before ``cfa_begin`` (or with ``cfa_ccr`` off) b = beta / (1 + beta) for every class:
      TRADES divided by (1 + beta), as the reference's TRADES mode (so gradients are
      1 / (1 + beta) of :class:`TRADES`'s at the same lr);
    - FAWA: after every epoch the class-wise robust accuracy on the validation split is
      measured under ``cfg.attack`` (the reference: PGD-10, CE, eps 8/255, step 2/255);
      when its minimum over classes is >= ``cfa_threshold`` (compared in float32, as the
      reference), the model enters the average (:func:`fawa_update`, decay ``cfa_decay``;
      the first such epoch copies it), else the average stays. It is saved as checkpoint
      ``fawa`` (``checkpoints/fawa.safetensors``, from the first epoch that entered);
      ``last`` stays the trained model. The paper reports the averaged model.

    Deviations: t_y is class y's correct count over its count (the reference divides by
    N / K, the same for balanced classes); the validation split is the recorded
    class-balanced one drawn with the run's seed (the reference: the first 100 images per
    class of CIFAR-10's training set); integer buffers are copied, not averaged. The
    reference also keeps a plain EMA model and writes checkpoints by a best-of rule; here
    neither.

    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> losses (B,), adversarial logits (B, K).
    """

    tallies = True  # t_y is the epoch's class tally of robust training accuracy

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.robust: torch.Tensor | None = None  # (K,) t_y of the last finished epoch
        self.eps_scale: torch.Tensor | None = None  # (K,) CCM radius scales in use; None: eps for every class
        self.ccr: torch.Tensor | None = None  # (K,) CCR weights b_y in use; None: beta / (1 + beta)
        self.fawa: dict[str, torch.Tensor] | None = None  # the weight average; None until an epoch enters
        self.fawa_epochs = 0  # epochs averaged in
        self.val_worst: float | None = None  # the last validation worst-class robust accuracy

    def update(self, epoch: int, model: nn.Module) -> None:
        f, t = self.cfg.fair, self.robust
        if t is None or epoch < f.cfa_begin:  # uniform eps and beta
            self.eps_scale = self.ccr = None
            return
        self.eps_scale = ccm_scale(t, f.cfa_ccm_lambda) if f.cfa_ccm else None
        self.ccr = ccr_weight(t, f.cfa_ccr_lambda, self.cfg.beta) if f.cfa_ccr else None

    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        """t_y from the epoch's tally; the FAWA step from the validation split (one host sync per epoch)."""
        tally, model = self.tally, unwrap(model)
        if tally.correct is not None and tally.total is not None:
            self.robust = tally.correct / tally.total.clamp(min=1)
        stats = self.measure(model, kl=False)
        worst = (stats.adv_correct / stats.count.clamp(min=1))[stats.count > 0].min()
        self.val_worst = float(worst)
        if bool(worst >= self.cfg.fair.cfa_threshold):
            self.fawa = fawa_update(self.fawa, model.state_dict(), self.cfg.fair.cfa_decay)
            self.fawa_epochs += 1

    def losses(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = training_attack(self.cfg.attack, model, eps)
        scale = None if self.eps_scale is None else self.eps_scale[y]
        x_adv = scaled_kl_attack(unwrap(model), x, spec.threat, getattr(spec, "steps", 1), generator, scale)
        clean_logits, adv_logits = model(x), model(x_adv)
        b = self.ccr
        if b is None:  # uniform: the reference's TRADES, beta / (1 + beta)
            b = torch.full((clean_logits.shape[1],), self.cfg.beta / (1 + self.cfg.beta), device=x.device)
        return cfa_losses(clean_logits, adv_logits, y, b), adv_logits

    def extra_checkpoints(self) -> dict[str, dict[str, torch.Tensor]]:
        return {} if self.fawa is None else {"fawa": self.fawa}

    def epoch_metrics(self) -> dict:
        """The radius scales and KL weights this epoch trained with (when calibrated), the validation
        worst-class robust accuracy after it and the number of epochs in the FAWA average."""
        extra: dict = {"cfa_fawa_epochs": self.fawa_epochs}
        if self.val_worst is not None:
            extra["cfa_val_worst"] = round(self.val_worst, 4)
        for key, t in (("cfa_eps_scale", self.eps_scale), ("cfa_ccr", self.ccr)):
            if t is not None:
                extra[key] = [round(v, 4) for v in t.tolist()]
        return super().epoch_metrics() | extra

    def state_dict(self) -> dict:
        return super().state_dict() | {"cfa_robust": self.robust, "cfa_eps_scale": self.eps_scale,
                                       "cfa_ccr": self.ccr, "cfa_fawa": self.fawa, "cfa_fawa_epochs": self.fawa_epochs,
                                       "cfa_val_worst": self.val_worst}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.robust, self.eps_scale, self.ccr = state.get("cfa_robust"), state.get("cfa_eps_scale"), state.get("cfa_ccr")
        self.fawa, self.fawa_epochs = state.get("cfa_fawa"), int(state.get("cfa_fawa_epochs", 0))
        self.val_worst = state.get("cfa_val_worst")
