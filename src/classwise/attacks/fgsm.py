"""The fast gradient sign method, with or without a random start."""

from __future__ import annotations

from torch import nn

from .pgd import PGD
from .threat import LinfThreat


class FGSM(PGD):
    r"""One signed-gradient step, projected: PGD with a single step.

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples",
    ICLR 2015 (FGSM, step = eps, no random start). Wong et al., "Fast is better
    than free: Revisiting adversarial training", ICLR 2020 (FGSM-RS: uniform
    random start in the ball, step = 1.25 eps).

    Threat model: L-inf ball of radius ``threat.eps`` intersected with [0, 1];
    one step of ``threat.step_size``, projected by the shared :class:`LinfThreat`.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`LinfThreat`; step_size eps (FGSM) or 1.25 eps (FGSM-RS).
        random_start: start uniformly in the ball (FGSM-RS), drawn from ``generator``.
        loss: "ce" or "cw"; temperature: T > 0, the loss sees ``logits / T``.
        keep_best: as in :class:`PGD`: True (evaluation) returns the clean
            image or the random start where those already fool the model, so
            robust accuracy never exceeds clean accuracy; False (training)
            returns the step's result.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = FGSM(model, LinfThreat(eps=0.3, step_size=0.375), random_start=True)
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "fgsm"

    def __init__(
        self,
        model: nn.Module,
        threat: LinfThreat,
        random_start: bool = False,
        *,
        loss: str = "ce",
        temperature: float = 1.0,
        keep_best: bool = True,
    ) -> None:
        super().__init__(
            model, threat, steps=1, random_start=random_start, loss=loss,
            temperature=temperature, keep_best=keep_best,
        )
