"""The fast gradient sign method (L-inf) and fast gradient method (L2), with or without a random start."""

from __future__ import annotations

from torch import nn

from .pgd import PGD
from .threat import Threat


class FGSM(PGD):
    r"""One gradient step, projected: PGD with a single step (FGSM under L-inf, FGM under L2).

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples",
    ICLR 2015 (FGSM, step = eps, no random start). Wong et al., "Fast is better
    than free: Revisiting adversarial training", ICLR 2020 (FGSM-RS: uniform
    random start in the ball, step = 1.25 eps).

    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1]; one step of ``threat.step_size``, projected by the shared
    threat object. Under L-inf the step follows the gradient's sign (FGSM);
    under L2 the L2-normalised gradient: the fast gradient method (FGM) of
    Goodfellow et al. and Miyato et al. (registry name "fgm").

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model; step_size eps (FGSM, FGM) or 1.25 eps (FGSM-RS).
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
        threat: Threat,
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
