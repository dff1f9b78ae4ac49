"""The threat models shared by every attack: L-inf (Madry et al., 2018) and L2.

One object owns random initialisation, the gradient step and the projection
onto the eps-ball intersected with the [0, 1] pixel box, so no attack copies
the projection line. Both threats have the same small interface
(``norm``, ``eps``, ``step_size``, ``random_init``, ``step``, ``project``,
``distance``); :func:`make_threat` builds one from its norm's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..config import NORMS  # "linf", "l2": the one list of threat models

_TINY = 1e-12  # keeps the L2 normalisations finite at a zero vector


def _check_step(step_size: float) -> None:
    if not step_size >= 0.0:
        raise ValueError(f"step size must be >= 0, got {step_size}")


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm of t (B, ...) -> (B,)."""
    return t.flatten(1).norm(p=2, dim=1)


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class LinfThreat:
    """L-inf ball of radius ``eps`` around clean images in [0, 1] pixel space.

    Args:
        eps: radius of the ball, in [0, 1] (0.3 for MNIST, 0.031 for CIFAR).
        step_size: size of one signed-gradient step (``alpha``).
    """

    eps: float
    step_size: float
    norm: ClassVar[str] = "linf"

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        _check_step(self.step_size)

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform start in the ball, clipped to [0, 1]. x: (B, C, H, W)."""
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.project(x + (2 * noise - 1) * self.eps, x)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One ascent step ``x_adv + step_size * sign(grad)``, projected."""
        return self.project(x_adv + self.step_size * grad.sign(), x)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Closest point of the eps-ball around ``x`` inside [0, 1]."""
        x_adv = torch.max(torch.min(x_adv, x + self.eps), x - self.eps)
        return x_adv.clamp_(0.0, 1.0)

    @staticmethod
    def distance(delta: torch.Tensor) -> torch.Tensor:
        """Per-example L-inf norm of perturbations delta (B, ...) -> (B,)."""
        return delta.flatten(1).abs().amax(dim=1)


@dataclass(frozen=True)
class L2Threat:
    """L2 ball of radius ``eps`` around clean images in [0, 1] pixel space.

    Random start: uniform in the ball (Gaussian direction, radius
    ``eps * U^(1/d)``, d = C*H*W), clipped to [0, 1]. Step: the gradient
    normalised per example to unit L2 norm, times ``step_size`` (zero where the
    gradient is zero). Projection: the perturbation is scaled into the ball,
    then the image clipped to [0, 1], as torchattacks' PGDL2 and AutoAttack's
    APGD-L2 do; clipping only shrinks every coordinate of the perturbation, so
    the result lies in the ball intersected with the box (it is the exact
    Euclidean projection onto that set whenever the box is inactive).

    Args:
        eps: radius of the ball in L2 units, >= 0 (RobustBench CIFAR-10: 0.5).
        step_size: L2 length of one step (``alpha``).
    """

    eps: float
    step_size: float
    norm: ClassVar[str] = "l2"

    def __post_init__(self) -> None:
        if not (0.0 <= self.eps < math.inf):
            raise ValueError(f"L2 eps must be a finite number >= 0, got {self.eps}")
        _check_step(self.step_size)

    def random_init(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform start in the L2 ball, clipped to [0, 1]. x: (B, C, H, W)."""
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        u = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype)
        radius = self.eps * u.pow(1.0 / x[0].numel())  # (B,)
        delta = direction * _rows(radius / (_flat_norm(direction) + _TINY), x)
        return self.project(x + delta, x)

    def step(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One ascent step ``x_adv + step_size * grad / ||grad||_2``, projected."""
        unit = grad / _rows(_flat_norm(grad) + _TINY, grad)
        return self.project(x_adv + self.step_size * unit, x)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Perturbation scaled into the eps-ball around ``x``, then clipped to [0, 1]."""
        delta = x_adv - x
        factor = torch.clamp(self.eps / (_flat_norm(delta) + _TINY), max=1.0)  # (B,)
        return (x + delta * _rows(factor, x)).clamp_(0.0, 1.0)

    @staticmethod
    def distance(delta: torch.Tensor) -> torch.Tensor:
        """Per-example L2 norm of perturbations delta (B, ...) -> (B,)."""
        return _flat_norm(delta)


Threat = LinfThreat | L2Threat
_THREATS: dict[str, type[LinfThreat] | type[L2Threat]] = {"linf": LinfThreat, "l2": L2Threat}


def check_norm(norm: str) -> str:
    """``norm`` lower-cased if it names a threat model ("linf", "l2"), else one clear ValueError."""
    key = str(norm).strip().lower()
    if key not in _THREATS:
        raise ValueError(f"unknown norm {norm!r} (known: {', '.join(NORMS)})")
    return key


def make_threat(norm: str, eps: float, step_size: float) -> Threat:
    """The threat model of ``norm`` ("linf" or "l2") with radius ``eps`` and step ``step_size``."""
    return _THREATS[check_norm(norm)](eps, step_size)
