"""Fast minimum-norm attack (FMN): each example's smallest adversarial perturbation, L-inf or L2."""

from __future__ import annotations

import math
from types import MappingProxyType

import torch
from torch import nn

from .base import Attack, eval_mode, rows
from .losses import cw_margins
from .pgd import grad_and_logits
from .threat import Threat

_TINY = 1e-12
_MIN_MOVE = 2.0 ** -20  # per-pixel floor of the first radius: 16 float32 ulps at 1.0, below any useful eps


def _margin_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed CW margin ``max_{j != y} z_j - z_y`` (positive where misclassified)."""
    return cw_margins(logits, y).sum()


def _cosine(start: float, end: float, i: int, steps: int) -> float:
    """Cosine annealing from ``start`` (i = 0) towards ``end`` (i = steps)."""
    return end + (start - end) * (1 + math.cos(math.pi * i / steps)) / 2


class FMN(Attack):
    r"""Fast minimum-norm attack: normalised gradient steps inside an adaptive eps-ball.

    Paper: Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial
    Attacks through Adaptive Norm Constraints", NeurIPS 2021 (algorithm 1,
    L-inf and L2 versions). Written from the paper; the defaults follow its
    reference implementation (alpha 1 -> alpha / 100 and gamma 0.05 -> 0.001,
    cosine annealed).

    Per example, from delta = 0: step delta along the L2-normalised gradient
    of the CW margin (ascent towards misclassification), project it onto the
    ball of the current radius r (in the threat's norm) and clip x + delta to
    [0, 1]. r shrinks by (1 - gamma) (and to the smallest adversarial norm so
    far) while the iterate is adversarial, grows by (1 + gamma) once an
    adversarial example has been found, and before that jumps to the linear
    estimate of the boundary, ``||delta|| + |margin| / ||grad||_dual`` (times
    ``overshoot``; never below the norm of a 2^-20 change of every pixel, so
    an example lying exactly on the decision boundary, whose estimate is 0,
    still moves). The smallest adversarial perturbation over the iterates is kept, its norm
    measured on the returned image.

    Threat model: ``threat.norm`` ("linf" or "l2") picks the norm that is
    minimised; ``threat.eps`` only decides what counts as an attack at that
    budget: ``attack(x, y)`` returns the minimal adversarial image where its
    norm is <= eps, else the clean image (so one run gives every eps below
    the one it is judged at, via :meth:`minimal`). ``threat.step_size`` is
    unused. Deterministic (no random start; the generator is not used).

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`~classwise.attacks.threat.LinfThreat` or
            :class:`~classwise.attacks.threat.L2Threat`.
        steps: iterations (100).
        alpha_init, alpha_final: step length, cosine annealed (1.0 -> alpha_init / 100).
        gamma_init, gamma_final: radius factor, cosine annealed (0.05 -> 0.001).
        overshoot: factor (>= 1) on the linear boundary estimate before the
            first success (1.1). A deviation from the paper's algorithm (which
            uses 1): clipping to [0, 1] keeps the iterate short of that radius,
            so without it iterates approach the boundary from the robust side
            and may never cross it in the step budget (as DeepFool's
            overshoot); the shrinking phase then removes the excess.

    :meth:`run` also returns "min_dist" (B,) float32: the smallest norm of a
    fooling perturbation found (0 where x itself is misclassified, inf where
    none was found). Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 ->
    (B, C, H, W), same dtype.

    Example:
        >>> attack = FMN(model, L2Threat(eps=0.5, step_size=0.0), steps=100)
        >>> x_adv, rec = attack.run(x, y)  # rec["min_dist"]: (B,) L2 distances
    """

    name = "fmn"
    identity = ("steps", "alpha_init", "alpha_final", "gamma_init", "gamma_final", "overshoot")
    record_fill = MappingProxyType({"min_dist": 0.0})  # clean-misclassified: distance 0

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        steps: int = 100,
        alpha_init: float = 1.0,
        alpha_final: float | None = None,
        gamma_init: float = 0.05,
        gamma_final: float = 0.001,
        overshoot: float = 1.1,
    ) -> None:
        super().__init__(model, threat)
        alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
        if steps < 1 or not (alpha_init > 0 and alpha_final > 0):
            raise ValueError(f"FMN needs steps >= 1 and step lengths > 0, got {steps}, {alpha_init}, {alpha_final}")
        if not (0 <= gamma_final <= gamma_init < 1):
            raise ValueError(f"FMN needs 0 <= gamma_final <= gamma_init < 1, got {gamma_init}, {gamma_final}")
        if not overshoot >= 1:
            raise ValueError(f"FMN needs overshoot >= 1, got {overshoot}")
        self.overshoot = overshoot
        self.steps, self.alpha_init, self.alpha_final = steps, alpha_init, alpha_final
        self.gamma_init, self.gamma_final = gamma_init, gamma_final

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self._within_eps(x, *self.minimal(x, y))

    def run(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
        *, clean_correct: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images as ``attack(x, y)`` and "min_dist" (B,) float32 (inf: none found)."""
        with eval_mode(self.model):
            best, dist = self.minimal(x.detach(), y)
        return self._within_eps(x, best, dist).detach(), {"min_dist": dist.float()}

    def _within_eps(self, x: torch.Tensor, best: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        return torch.where(rows(dist <= self.threat.eps, x), best, x)

    def minimal(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest fooling image found per example (x where none) and its norm (B,), inf where none.

        Call it with the model in eval mode (``attack.run`` does).
        """
        delta = torch.zeros_like(x)
        radius = torch.full(y.shape, math.inf, device=x.device, dtype=x.dtype)
        best, found = x.clone(), torch.zeros_like(y, dtype=torch.bool)
        best_norm = torch.full(y.shape, math.inf, device=x.device, dtype=x.dtype)
        worst = self.threat.distance(torch.maximum(x, 1 - x))  # (B,) no perturbation in the box is larger
        floor = self.threat.distance(torch.full_like(x, _MIN_MOVE))  # (B,) smallest first radius
        for i in range(self.steps):
            grad, logits = grad_and_logits(self.model, x + delta, y, _margin_sum)
            margin = cw_margins(logits, y)  # (B,) > 0 where adversarial
            norm = self.threat.distance(delta)
            better = (margin > 0) & (norm < best_norm)
            best, best_norm = torch.where(rows(better, x), x + delta, best), torch.where(better, norm, best_norm)
            found |= margin > 0
            radius = torch.minimum(self._radius(i, radius, margin, grad, norm, found, best_norm, floor), worst)
            alpha = _cosine(self.alpha_init, self.alpha_final, i, self.steps)
            step = grad / rows(grad.flatten(1).norm(dim=1) + _TINY, grad)
            delta = self._project(delta + alpha * step, radius)
            delta = (x + delta).clamp(0.0, 1.0) - x
        dist = self.threat.distance(best - x)  # measured on the returned images
        return best, torch.where(found, dist, torch.full_like(dist, math.inf))

    def _radius(self, i: int, radius: torch.Tensor, margin: torch.Tensor, grad: torch.Tensor, norm: torch.Tensor,
                found: torch.Tensor, best_norm: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        """Next radius (B,): shrink while adversarial, grow after a success, else the linear boundary estimate.

        The estimate is at least ``floor`` (B,): on the boundary (margin exactly 0, the argmax
        tie broken towards the true class) it is 0, and a zero radius would never move.
        """
        gamma = _cosine(self.gamma_init, self.gamma_final, i, self.steps)
        dual = 1 if self.threat.norm == "linf" else 2
        to_boundary = margin.abs() / grad.flatten(1).norm(p=dual, dim=1).clamp(min=_TINY)
        estimate = torch.maximum((norm + to_boundary) * self.overshoot, floor)
        grow = torch.where(found, radius * (1 + gamma), estimate)
        return torch.where(margin > 0, torch.minimum(radius * (1 - gamma), best_norm), grow)

    def _project(self, delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """delta (B, C, H, W) onto the ball of per-example ``radius`` (B,) in the threat's norm."""
        r = rows(radius, delta)
        if self.threat.norm == "linf":
            return torch.max(torch.min(delta, r), -r)
        factor = torch.clamp(r / (rows(delta.flatten(1).norm(dim=1), delta) + _TINY), max=1.0)
        return delta * factor

    def __repr__(self) -> str:
        return (f"FMN(norm={self.threat.norm!r}, eps={self.threat.eps}, steps={self.steps}, "
                f"alpha={self.alpha_init}->{self.alpha_final}, gamma={self.gamma_init}->{self.gamma_final})")
