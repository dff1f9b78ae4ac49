"""Temperature-PGD (section 4 of the paper) and the 1/T sweep against vanilla PGD."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .pgd import PGD
from .threat import Threat, make_threat

if TYPE_CHECKING:  # evaluate imports this package; import it lazily at run time
    from ..results import EvalResults

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


def temperature_sweep(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    inv_temps: Sequence[float] = PAPER_INV_TEMPERATURES,
    *,
    step_size: float | None = None,
    steps: int = 20,
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    progress: bool = False,
    norm: str = "linf",
) -> EvalResults:
    """Vanilla PGD and Temperature-PGD at each 1/T on the same examples and seed.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) int.
        eps: radius in the units of ``norm`` ("linf" or "l2"); step_size:
            default 2.5 eps / steps; steps: PGD steps.
        inv_temps: the 1/T values (default: the paper's 14).
        class_names, batch_size, device, seed, progress: as :func:`classwise.evaluate.evaluate`.

    Returns:
        :class:`~classwise.results.EvalResults` with adversarial predictions
        under ``f"pgd{steps}"`` (the baseline) and ``tpgd_name(x)`` per 1/T.
        1/T = 1 is vanilla PGD, so its column is the baseline's. Feed it to
        :func:`relative_robustness` for the paper's table 4.

    Example:
        >>> res = temperature_sweep(model, x, y, eps=0.031, step_size=0.003)
        >>> relative_robustness(res)["tpgd:5"]  # (K + 1,) total, then per class
    """
    from ..evaluate import evaluate

    threat = make_threat(norm, eps, 2.5 * eps / steps if step_size is None else step_size)
    baseline = f"pgd{steps}"
    attacks = {baseline: PGD(model, threat, steps)}
    attacks |= {tpgd_name(t): TemperaturePGD(model, threat, t, steps) for t in inv_temps if t != 1}
    results = evaluate(model, images, labels, attacks, class_names=class_names, batch_size=batch_size,
                       device=device, seed=seed, progress=progress)
    if any(t == 1 for t in inv_temps):
        results.adv_pred[tpgd_name(1)] = results.adv_pred[baseline].copy()
    return results


def relative_robustness(results: EvalResults, baseline: str | None = None) -> dict[str, np.ndarray]:
    """Robustness of each "tpgd:*" attack minus the baseline's, in percentage points.

    Returns name -> (K + 1,) float64: the total first, then one value per class
    (the rows of the paper's tables 3 and 4). ``baseline`` defaults to the one
    "pgd*" attack of ``results``.
    """
    from ..analysis.classwise import classwise_accuracy, overall_accuracy

    baseline = baseline or _only_pgd(results.attacks)
    k = results.num_classes

    def row(name: str) -> np.ndarray:
        pred = results.adv_pred[name]
        return np.concatenate([[overall_accuracy(results.labels, pred)],
                               classwise_accuracy(results.labels, pred, k)])

    base = row(baseline)
    return {name: row(name) - base for name in results.attacks if name.startswith("tpgd:")}


def _only_pgd(attacks: list[str]) -> str:
    pgd = [a for a in attacks if a.startswith("pgd")]
    if len(pgd) != 1:
        raise ValueError(f"give the baseline: expected one 'pgd*' attack, found {pgd or 'none'}")
    return pgd[0]
