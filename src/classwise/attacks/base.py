"""A small base class for attacks: mode handling and the input gradient.

Subclasses implement :meth:`Attack.perturb`; callers use ``attack(x, y)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from .threat import Threat

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_SCALARS = (bool, int, float, str)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore each submodule's mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) mask or value reshaped to broadcast over ``like`` (B, C, H, W)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
    """Gradient of ``loss_fn(model(x), y)`` (summed) with respect to x only.

    Parameters receive no gradient (``torch.autograd.grad`` on the input), so
    an attack inside a training step leaves ``p.grad`` untouched.
    x: (B, C, H, W) in [0, 1]; returns (B, C, H, W).
    """
    x = x.detach().requires_grad_(True)
    loss = loss_fn(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


class Attack(ABC):
    """An attack on a model mapping [0, 1] images to logits, under one threat model.

    Args:
        model: ``nn.Module`` mapping (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the shared threat model, :class:`~classwise.attacks.threat.LinfThreat`
            or :class:`~classwise.attacks.threat.L2Threat` (eps, step size, projection).

    Calling ``attack(x, y, generator)`` returns adversarial images of the same
    shape and dtype, inside the eps-ball and [0, 1]; the model runs in eval
    mode and its train/eval mode is restored afterwards. :meth:`run` also
    returns per-example records (minimal distances, targets reached) that
    evaluations keep in ``EvalResults.extras``.
    """

    name: str = "attack"  # the attack's family, as the registry names it
    # Examples per class that evaluations draw by default for this attack
    # (None: the whole evaluation set). Costly attacks set it (paper, appendix E).
    default_per_class: int | None = None
    # Uses only the model's outputs (queries) or another model's gradients.
    black_box: bool = False
    # Norms of the threat models this attack exists for; others are refused.
    norms: tuple[str, ...] = ("linf", "l2")
    # Per-example records of :meth:`run` -> value for examples an evaluation does not attack.
    record_fill: Mapping[str, float] = MappingProxyType({})
    # The settings that define the attack: public scalar attributes set by __init__ and never
    # changed after, recorded by facts() (None values left out). How it runs (compact_every,
    # caches, state of a first call) is not declared and never enters the facts.
    identity: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        private = [k for k in cls.identity if k.startswith("_")]
        if private:
            raise TypeError(f"{cls.__name__}.identity declares private attributes {private}: facts are public settings")

    def __init__(self, model: nn.Module, threat: Threat) -> None:
        if threat.norm not in self.norms:
            raise ValueError(f"{self.name!r} exists for the {'/'.join(self.norms)} threat model only, not {threat.norm}")
        self.model = model
        self.threat = threat

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
        *, clean_correct: bool = False,
    ) -> torch.Tensor:
        """Adversarial images for x (B, C, H, W), labels y (B,).

        ``clean_correct=True`` is the caller's promise that the model classifies
        every clean x correctly (:func:`classwise.evaluate.evaluate` attacks only
        such examples). Attacks that would first check the clean image then skip
        that forward pass; their results are unchanged while the promise holds.
        """
        perturb = self.perturb_clean_correct if clean_correct else self.perturb
        with eval_mode(self.model):
            return perturb(x.detach(), y, generator).detach()

    def run(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
        *, clean_correct: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adversarial images (as ``attack(x, y)``) and per-example records (B, ...).

        Records are keyed as in :attr:`record_fill` (e.g. "min_dist" for
        minimum-norm attacks, "target_hits" for targeted ones); none by default.
        """
        return self(x, y, generator, clean_correct=clean_correct), {}

    @abstractmethod
    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Return adversarial images for clean images x (B, C, H, W), labels y (B,)."""

    def perturb_clean_correct(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """:meth:`perturb` for inputs the model classifies correctly (by default the same call)."""
        return self.perturb(x, y, generator)

    def facts(self) -> dict[str, Any]:
        """The attack's identity: family, class facts, threat model (norm, eps, step) and its declared settings.

        Exactly the settings the class declares in :attr:`identity` (steps,
        restarts, loss, temperature, ...; None values left out), read from
        attributes that ``__init__`` sets, so the facts are the same before and
        after a run. Evaluations record them with the results; analyses and the
        report read them instead of parsing names.
        """
        facts: dict[str, Any] = {"family": self.name, "class": type(self).__name__, "black_box": self.black_box,
                                 "norm": getattr(self.threat, "norm", "linf"), "eps": float(self.threat.eps),
                                 "step_size": float(self.threat.step_size), "per_class": self.default_per_class}
        settings = {k: getattr(self, k) for k in self.identity}
        wrong = [k for k, v in settings.items() if v is not None and not isinstance(v, _SCALARS)]
        if wrong:
            raise TypeError(f"{type(self).__name__}.identity names non-scalar settings {wrong}")
        return facts | {k: v for k, v in sorted(settings.items()) if v is not None}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(norm={self.threat.norm!r}, eps={self.threat.eps}, "
                f"step_size={self.threat.step_size})")
