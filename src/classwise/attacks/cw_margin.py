"""CW-margin: fixed-eps PGD on the Carlini-Wagner margin loss (not CW-inf)."""

from __future__ import annotations

from torch import nn

from .pgd import PGD, Target
from .threat import Threat


class CWMarginPGD(PGD):
    r"""PGD that ascends the CW margin ``max_{j != y} z_j - z_y`` inside the eps-ball.

    This is the common *fixed-eps* "CW" attack of robustness papers (Madry et
    al. 2018, TRADES, MART): PGD with the margin loss of Carlini & Wagner in
    place of cross-entropy. It is **not** :class:`~classwise.attacks.cw_inf.CWInf`
    ("cw-inf"), the minimum-distance, tau-based L-inf attack of Carlini &
    Wagner that the paper runs; registry names "cw-margin" (20 steps) and
    "cw-marginK" (K steps) build this one.

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural
    Networks", IEEE S&P 2017 (the margin loss); Madry et al., ICLR 2018 (PGD).

    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1]; ``steps`` steps of ``threat.step_size`` projected by the
    shared threat object, as :class:`PGD`. Targeted (``target``): ascends
    ``z_t - max_{j != t} z_j`` toward class t, as Carlini & Wagner's targeted loss.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model (norm, eps, step size).
        steps, random_start, restarts, keep_best, target: as :class:`PGD`.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = CWMarginPGD(model, LinfThreat(eps=8 / 255, step_size=2 / 255), steps=20)
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "cw-margin"

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        steps: int = 20,
        random_start: bool = True,
        restarts: int = 1,
        keep_best: bool = True,
        target: Target = None,
    ) -> None:
        super().__init__(
            model, threat, steps, random_start=random_start, restarts=restarts,
            loss="cw", keep_best=keep_best, target=target,
        )
