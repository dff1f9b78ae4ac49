"""Thin wrappers over torchattacks: APGD-CE, APGD-T, FAB-T, Square and AutoAttack.

torchattacks is optional (``pip install torchattacks`` or ``classwise[attacks]``);
it is imported when an attack runs. Settings are those of the reference
AutoAttack "standard" version (Croce & Hein, ICML 2020, github.com/fra31/auto-attack),
set explicitly: torchattacks' own defaults differ (10 steps, its AutoAttack
included, and 9 target classes only for 10-class models).
"""

from __future__ import annotations

from abc import abstractmethod

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import ClasswiseError
from .base import Attack, rows
from .threat import LinfThreat

REFERENCE_TARGETS = 9  # target classes of APGD-T and FAB-T in AutoAttack "standard"


def _torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError as e:
        raise ClasswiseError(
            "this attack needs torchattacks: pip install torchattacks (or classwise[attacks])"
        ) from e
    return torchattacks


@contextmanager
def _no_parameter_grads(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad for the call (FAB backpropagates into them)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _seed(generator: torch.Generator | None) -> int:
    """A seed for torchattacks, drawn from ``generator`` (0 without one)."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))


class ReferenceSettings(Attack):
    """The reference AutoAttack settings shared by the torchattacks wrappers and AutoAttack.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`LinfThreat`; only eps is used.
        steps: iterations of APGD / FAB (reference 100).
        restarts: restarts (reference 1 in "standard").
        n_queries: Square's query budget (reference 5000).
        n_target_classes: targets of APGD-T / FAB-T, capped at K - 1 (reference 9).
    """

    shown: tuple[str, ...] = ("steps", "restarts", "n_queries", "n_target_classes")  # in repr

    def __init__(
        self,
        model: nn.Module,
        threat: LinfThreat,
        steps: int = 100,
        restarts: int = 1,
        n_queries: int = 5000,
        n_target_classes: int = REFERENCE_TARGETS,
    ) -> None:
        super().__init__(model, threat)
        if min(steps, restarts, n_queries, n_target_classes) < 1:
            raise ValueError("steps, restarts, n_queries and n_target_classes must be >= 1")
        self.steps, self.restarts = steps, restarts
        self.n_queries, self.n_target_classes = n_queries, n_target_classes

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)}" for k in self.shown)
        return f"{type(self).__name__}(eps={self.threat.eps}, {settings})"


class LibraryAttack(ReferenceSettings):
    r"""Base of the torchattacks wrappers; subclasses build the attack in :meth:`build`.

    Each call draws one seed from ``generator`` and runs the torchattacks
    attack inside ``torch.random.fork_rng`` (torchattacks reseeds the global
    RNG; ours is left untouched), with parameters frozen (no ``.grad``) and
    the model in eval mode (torchattacks' own mode switching is undone by our
    base class). Outputs are projected by the shared :class:`LinfThreat`.
    Arguments: see :class:`ReferenceSettings`.
    """

    @abstractmethod
    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        """The torchattacks attack for a model with ``num_classes`` outputs."""

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        if self.threat.eps == 0:
            return x.clone()
        ta, seed = _torchattacks(), _seed(generator)
        with torch.no_grad():
            num_classes = self.model(x[:1]).shape[1]
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _no_parameter_grads(self.model), torch.enable_grad():
            x_adv = self.build(ta, num_classes, seed)(x, y)
        return self.threat.project(x_adv.to(x.dtype), x)

    def _targets(self, num_classes: int) -> int:
        return max(1, min(self.n_target_classes, num_classes - 1))

class APGDCE(LibraryAttack):
    r"""APGD on cross-entropy: step-size-free PGD with momentum and checkpoints.

    Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with
    an ensemble of diverse parameter-free attacks", ICML 2020.
    Threat model: L-inf ball of radius eps intersected with [0, 1].
    Settings (reference "standard"): 100 steps, 1 restart, rho 0.75, no EOT.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = APGDCE(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = "apgd-ce"
    shown = ("steps", "restarts")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        return ta.APGD(self.model, norm="Linf", eps=self.threat.eps, steps=self.steps,
                       n_restarts=self.restarts, seed=seed, loss="ce", eot_iter=1, rho=0.75)


class APGDT(LibraryAttack):
    r"""Targeted APGD on the targeted DLR loss, over the top-9 non-true classes.

    Paper: Croce & Hein, ICML 2020.
    Threat model: L-inf ball of radius eps intersected with [0, 1].
    Settings (reference "standard"): 100 steps, 1 restart per target,
    9 target classes (K - 1 if fewer), rho 0.75. Needs K >= 4 (DLR loss).
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = APGDT(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = "apgd-t"
    shown = ("steps", "restarts", "n_target_classes")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        attack = ta.APGDT(self.model, norm="Linf", eps=self.threat.eps, steps=self.steps,
                          n_restarts=self.restarts, seed=seed, eot_iter=1, rho=0.75, n_classes=num_classes)
        attack.n_target_classes = self._targets(num_classes)
        return attack


class FABT(LibraryAttack):
    r"""Targeted FAB: minimum-norm boundary attack over the top-9 non-true classes.

    Paper: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast
    Adaptive Boundary Attack", ICML 2020.
    Threat model: L-inf; a found image counts only within eps (else clean).
    Settings (reference "standard"): 100 steps, 1 restart, 9 target classes,
    alpha_max 0.1, eta 1.05, beta 0.9.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = FABT(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = "fab-t"
    shown = ("steps", "restarts", "n_target_classes")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        attack = ta.FAB(self.model, norm="Linf", eps=self.threat.eps, steps=self.steps,
                        n_restarts=self.restarts, alpha_max=0.1, eta=1.05, beta=0.9, seed=seed,
                        multi_targeted=True, n_classes=num_classes)
        attack.n_target_classes = self._targets(num_classes)
        return attack


class Square(LibraryAttack):
    r"""Square Attack: score-based random search over square-shaped updates (black box).

    Paper: Andriushchenko et al., "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020.
    Threat model: L-inf ball of radius eps intersected with [0, 1].
    Settings (reference "standard"): 5000 queries, 1 restart, p_init 0.8,
    margin loss, rescaled schedule.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = Square(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = "square"
    black_box = True
    shown = ("n_queries", "restarts")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        return ta.Square(self.model, norm="Linf", eps=self.threat.eps, n_queries=self.n_queries,
                         n_restarts=self.restarts, p_init=0.8, loss="margin", resc_schedule=True, seed=seed)


class AutoAttack(ReferenceSettings):
    r"""AutoAttack "standard": APGD-CE, APGD-T, FAB-T, Square, each on what is still robust.

    Paper: Croce & Hein, ICML 2020. The cascade is ours (per-example robust
    flags; each attack runs only on examples all earlier ones failed on), with
    the reference settings of each component (see :class:`APGDCE`,
    :class:`APGDT`, :class:`FABT`, :class:`Square`) rather than torchattacks'
    ``AutoAttack``, whose components run 10 steps. Every component gets its
    own seed from ``generator``.
    Threat model: L-inf ball of radius eps intersected with [0, 1].
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = AutoAttack(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = "autoattack"
    components = (APGDCE, APGDT, FABT, Square)
    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        out = x.clone()
        with torch.no_grad():
            robust = self.model(x).argmax(dim=1) == y
        for cls in self.components:
            idx = robust.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            part = cls(self.model, self.threat, self.steps, self.restarts, self.n_queries, self.n_target_classes)
            x_adv = part.perturb(x[idx], y[idx], generator)
            with torch.no_grad():
                fooled = self.model(x_adv).argmax(dim=1) != y[idx]
            out[idx] = torch.where(rows(fooled, x_adv), x_adv, out[idx])
            robust[idx[fooled]] = False
        return out
