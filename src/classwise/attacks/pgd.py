"""Projected gradient descent (PGD) under the L-inf threat model."""

from __future__ import annotations

import torch
from torch import nn

from .base import Attack, LossFn, rows
from .losses import make_loss
from .threat import LinfThreat


def grad_and_logits(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradient of ``loss_fn(model(x), y)`` and the (detached) logits.

    Like :func:`classwise.attacks.base.input_grad` (parameters get no .grad),
    but it also hands back the logits of the same forward pass, and it works
    inside an outer ``torch.no_grad()``. x: (B, C, H, W); returns grad
    (B, C, H, W) and logits (B, K).
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(loss_fn(logits, y), x)
    return grad, logits.detach()


def _keep_fooling(
    best: torch.Tensor, fooled: torch.Tensor, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Store ``x_adv`` for examples it fools for the first time (no host sync)."""
    new = (logits.argmax(dim=1) != y) & ~fooled  # (B,)
    return torch.where(rows(new, x_adv), x_adv, best), fooled | new


class PGD(Attack):
    r"""PGD with random start, restarts and a choice of loss.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018. Temperature-PGD (``temperature != 1``): section 4 of
    "Intriguing class-wise properties of adversarial training".

    Threat model: L-inf ball of radius ``threat.eps`` intersected with [0, 1];
    ``steps`` signed-gradient steps of ``threat.step_size``, each projected by
    the shared :class:`LinfThreat`.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`LinfThreat` (eps, step size, projection).
        steps: gradient steps per restart (>= 1).
        random_start: start each restart uniformly in the ball.
        restarts: independent runs (>= 1); each draws its random start from
            ``generator`` in order, and nothing else is drawn from it.
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin).
        temperature: T > 0; the loss sees ``logits / T``.
        keep_best: True (evaluation): per example, return the first iterate
            that fooled the model, the clean image counting as the first
            candidate (so robust accuracy <= clean accuracy, as in AutoAttack),
            else the last iterate. Fooling is read from the logits of the
            forward pass that computes each gradient, so the loop never syncs
            with the host; with a fixed seed, more steps or restarts only grow
            the set of fooled examples. False (training, as Madry et al.):
            return the last iterate; needs ``restarts == 1``.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = PGD(model, LinfThreat(eps=8 / 255, step_size=2 / 255), steps=20)
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "pgd"

    def __init__(
        self,
        model: nn.Module,
        threat: LinfThreat,
        steps: int,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        temperature: float = 1.0,
        keep_best: bool = True,
    ) -> None:
        super().__init__(model, threat)
        _check_counts(steps, restarts, keep_best)
        self.loss_fn = make_loss(loss, temperature)
        self.steps, self.restarts, self.random_start = steps, restarts, random_start
        self.loss, self.temperature, self.keep_best = loss, temperature, keep_best

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self._perturb(x, y, generator, check_clean=True)

    def perturb_clean_correct(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """As :meth:`perturb`, without the forward pass that checks whether x itself fools."""
        return self._perturb(x, y, generator, check_clean=False)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None, check_clean: bool
    ) -> torch.Tensor:
        best, fooled = x.clone(), torch.zeros_like(y, dtype=torch.bool)
        if self.keep_best and self.random_start and check_clean:  # else the first step's forward sees x
            best, fooled = _keep_fooling(best, fooled, x, self._logits(x), y)
        for restart in range(self.restarts):
            x_adv, best, fooled = self._descend(x, y, generator, best, fooled)
            if restart + 1 < self.restarts:  # the next restart replaces x_adv
                best, fooled = _keep_fooling(best, fooled, x_adv, self._logits(x_adv), y)
        if not self.keep_best:
            return x_adv
        return torch.where(rows(fooled, x), best, x_adv)

    def _descend(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None,
        best: torch.Tensor,
        fooled: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart; returns its last iterate and the updated best/fooled."""
        x_adv = self.threat.random_init(x, generator) if self.random_start else x.clone()
        for _ in range(self.steps):
            grad, logits = grad_and_logits(self.model, x_adv, y, self.loss_fn)
            best, fooled = _keep_fooling(best, fooled, x_adv, logits, y)
            x_adv = self.threat.step(x_adv, grad, x)
        return x_adv, best, fooled

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.threat.eps}, step_size={self.threat.step_size}, "
            f"steps={self.steps}, restarts={self.restarts}, random_start={self.random_start}, "
            f"loss={self.loss!r}, temperature={self.temperature}, keep_best={self.keep_best})"
        )


def _check_counts(steps: int, restarts: int, keep_best: bool) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if restarts > 1 and not keep_best:
        raise ValueError("restarts > 1 needs keep_best=True (else only the last restart is returned)")
