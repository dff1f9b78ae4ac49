"""Bring your own attack: a torchattacks object or any callable ``(x, y) -> x_adv``.

:class:`CustomAttack` puts such an attack behind :class:`Attack`, so
:func:`classwise.evaluate.evaluate` runs it beside registry attacks and records
it under the name the user gave. Every output is checked against the threat
model (inside the eps-ball around x, within ``TOLERANCE``, and inside [0, 1]):
an attack that leaves it raises one clear error instead of reporting a
robustness that the threat model does not allow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ClasswiseError
from .base import Attack
from .threat import L2Threat, LinfThreat

AttackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TOLERANCE = 1e-5  # float rounding of x + delta, clamped; far below one 8-bit pixel step (1/255)


def is_torchattacks(obj: object) -> bool:
    """Whether ``obj`` is a torchattacks attack (checked by its class's module, torchattacks not imported)."""
    return any(c.__module__.split(".")[0] == "torchattacks" for c in type(obj).__mro__)


class CustomAttack(Attack):
    """A user's attack under a user's name, its outputs checked against the threat model.

    Args:
        model: the evaluated model (kept in eval mode during the call).
        fn: a torchattacks attack or any callable mapping x (B, C, H, W) in [0, 1]
            and labels y (B,) to adversarial images of the same shape.
        label: the name results are recorded under.
        eps: the budget the outputs are checked against (default: ``fn.eps``).
        norm: "linf" or "l2" (default: "l2" for torchattacks classes whose name ends in L2).

    The callable draws its own randomness (``generator`` is not passed on).
    """

    name = "custom"
    identity = ("label",)

    def __init__(self, model: nn.Module, fn: AttackFn, label: str, eps: float | None = None,
                 norm: str | None = None) -> None:
        eps = getattr(fn, "eps", None) if eps is None else eps
        if eps is None:
            raise ClasswiseError(f"attack {label!r}: give eps= so its outputs can be checked against the threat model")
        self.norm = norm or ("l2" if type(fn).__name__.endswith("L2") else "linf")
        if self.norm not in ("linf", "l2"):
            raise ClasswiseError(f"attack {label!r}: norm must be 'linf' or 'l2', got {self.norm!r}")
        super().__init__(model, LinfThreat(float(eps), 0.0) if self.norm == "linf" else _L2Ball(float(eps)))
        self.fn, self.label = fn, label

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x_adv = self.fn(x, y)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            got = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
            raise ClasswiseError(f"attack {self.label!r} returned {got}, not images of shape {tuple(x.shape)}")
        self.check(x, x_adv.detach().to(x.dtype))
        return x_adv.detach().to(x.dtype)

    def check(self, x: torch.Tensor, x_adv: torch.Tensor) -> None:
        """One error when ``x_adv`` leaves [0, 1] or the eps-ball around ``x`` (beyond ``TOLERANCE``)."""
        delta = (x_adv - x).flatten(1)
        size = delta.abs().amax(1) if self.norm == "linf" else delta.norm(dim=1)
        eps = float(self.threat.eps)
        low, high = float(x_adv.min()), float(x_adv.max())
        if not bool(torch.isfinite(x_adv).all()) or low < -TOLERANCE or high > 1 + TOLERANCE:
            raise ClasswiseError(f"attack {self.label!r} left the [0, 1] image range (min {low:.4g}, "
                                 f"max {high:.4g}): its results would not be valid adversarial images")
        if float(size.max()) > eps + TOLERANCE:
            raise ClasswiseError(f"attack {self.label!r} left the threat model: {self.norm} perturbation "
                                 f"{float(size.max()):.4g} > eps {eps:g} on {int((size > eps + TOLERANCE).sum())} "
                                 "images")

    def facts(self) -> dict[str, Any]:
        """family "custom", the name and class given, eps, norm, and the callable's scalar settings."""
        facts = super().facts() | {"norm": self.norm, "attack_class": _qualname(self.fn)}
        facts.pop("step_size", None)
        settings = {f"setting.{k}": v for k, v in vars(self.fn).items()
                    if isinstance(v, (bool, int, float, str)) and not k.startswith("_")} if hasattr(self.fn, "__dict__") else {}
        if "alpha" in getattr(self.fn, "__dict__", {}):
            facts["step_size"] = float(vars(self.fn)["alpha"])
        return facts | dict(sorted(settings.items()))


@dataclass(frozen=True)
class _L2Ball(L2Threat):
    """The L2 budget of a custom attack: only ``eps`` and ``norm`` are read, so any eps >= 0 is one (infinity too)."""

    step_size: float = 0.0

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")


def _qualname(fn: object) -> str:
    kind = fn if isinstance(fn, type) or callable(fn) and hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(fn).__name__)}"


__all__ = ["CustomAttack", "TOLERANCE", "is_torchattacks"]
