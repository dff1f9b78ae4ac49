"""The L-inf threat model shared by every attack (Madry et al., 2018).

One object owns random initialisation, the signed-gradient step and the
projection onto the eps-ball intersected with the [0, 1] pixel box, so no
attack copies the projection line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinfThreat:
    """L-inf ball of radius ``eps`` around clean images in [0, 1] pixel space.

    Args:
        eps: radius of the ball, in [0, 1] (0.3 for MNIST, 0.031 for CIFAR).
        step_size: size of one signed-gradient step (``alpha``).
    """

    eps: float
    step_size: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        if self.step_size < 0.0:
            raise ValueError(f"step size must be >= 0, got {self.step_size}")

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
