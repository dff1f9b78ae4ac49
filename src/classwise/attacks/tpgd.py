"""Temperature-PGD (section 4 of the paper); the sweep over 1/T is ``classwise.evaluate.temperature_sweep``."""

from __future__ import annotations

from torch import nn

from .pgd import PGD
from .threat import Threat


# The 1/T values of the paper's sweep (section 4, tables 3 and 4).
PAPER_INV_TEMPERATURES = (1, 2, 3, 4, 5, 7, 10, 50, 75, 100, 125, 150, 200, 300)


class TemperaturePGD(PGD):
    r"""PGD on the cross-entropy of ``softmax(f(x) / T)``, given as ``inv_temperature = 1/T``.

    1/T > 1 sharpens the softmax, so the gradient keeps pointing at the
    confusable classes of examples the model is already sure about; the paper
    finds that this mostly hurts the vulnerable classes. ``inv_temperature=1``
    is vanilla PGD (same iterates for the same generator). Registry name:
    "tpgd:X" with X = 1/T (PGD-20, step 2.5 eps / 20 unless given).

    Paper: "Intriguing class-wise properties of adversarial training",
    section 4 and appendix F; PGD of Madry et al., ICLR 2018.

    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1]; steps of ``threat.step_size`` projected by the shared threat
    object, as :class:`PGD`.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model (norm, eps, step size).
        inv_temperature: 1/T > 0; the loss sees ``logits * inv_temperature``.
        steps, random_start, restarts, keep_best: as :class:`PGD`.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = TemperaturePGD(model, LinfThreat(0.031, 0.003), inv_temperature=5.0)
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "tpgd"
    identity = (*PGD.identity, "inv_temperature")

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        inv_temperature: float,
        steps: int = 20,
        random_start: bool = True,
        restarts: int = 1,
        keep_best: bool = True,
    ) -> None:
        if not inv_temperature > 0:
            raise ValueError(f"1/T must be > 0, got {inv_temperature}")
        super().__init__(
            model, threat, steps, random_start=random_start, restarts=restarts,
            temperature=1.0 / inv_temperature, keep_best=keep_best,
        )
        self.inv_temperature = inv_temperature


def tpgd_name(inv_temperature: float) -> str:
    """Registry spec of Temperature-PGD at 1/T: 2 -> "tpgd:2", 0.5 -> "tpgd:0.5"."""
    return f"tpgd:{float(inv_temperature):g}"
