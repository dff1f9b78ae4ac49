"""AutoAttack's attacks: APGD-CE, APGD-T, FAB-T, Square and the AutoAttack ensemble.

Two backends run them. The default is the official implementation
(Croce & Hein, ICML 2020, github.com/fra31/auto-attack; ``pip install
pyautoattack``, the package RobustBench depends on), configured by its own
``AutoAttack(version="standard")`` object, so class-wise numbers are
comparable with the RobustBench leaderboard. The alternative is torchattacks
(``backend="torchattacks"``), with the same "standard" settings set
explicitly: torchattacks' own defaults differ (10 steps, its AutoAttack
included, and 9 target classes only for 10-class models).

``pyautoattack`` is a dependency of classwise, torchattacks optional
(``classwise[attacks]``); both are imported only when an attack runs. Each class names what it is in class attributes: ``family``
("apgd-ce", ...), ``backend`` ("autoattack" or "torchattacks") and
``backend_version`` (the installed package's version, or None).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ..errors import ClasswiseError
from .base import Attack, rows
from .threat import Threat

REFERENCE_TARGETS = 9  # target classes of APGD-T and FAB-T in AutoAttack "standard"
OFFICIAL_MODULES = ("pyautoattack", "autoattack")  # PyPI wheel, then a git install of fra31/auto-attack
BACKENDS = ("autoattack", "torchattacks")


class PackageVersion:
    """A class attribute that reads an installed distribution's version when accessed (None if absent)."""

    def __init__(self, *distributions: str) -> None:
        self.distributions = distributions

    def __get__(self, obj: object, owner: type | None = None) -> str | None:
        for dist in self.distributions:
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None


def _torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError as e:
        raise ClasswiseError(
            "this attack needs torchattacks: pip install torchattacks (or classwise[attacks])"
        ) from e
    return torchattacks


def _official() -> Any:
    """The official AutoAttack package (``pyautoattack`` from PyPI, else ``autoattack`` from git)."""
    for name in OFFICIAL_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ClasswiseError("this attack needs the official AutoAttack: pip install pyautoattack "
                         "(a dependency of classwise), or pass backend=torchattacks")


def official_norm(threat: Any) -> str:
    """The official packages' name of the threat model's norm: "L2" or "Linf"."""
    return "L2" if getattr(threat, "norm", "linf") == "l2" else "Linf"


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


def _set_apgd_iterations(apgd: Any, n_iter: int) -> None:
    """``n_iter`` on an official APGD and the checkpoint schedule its constructor derives from it."""
    apgd.n_iter = apgd.n_iter_orig = n_iter
    apgd.n_iter_2, apgd.n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
    apgd.size_decr = max(int(0.03 * n_iter), 1)


def _seed(generator: torch.Generator | None) -> int:
    """A seed for the library, drawn from ``generator`` (0 without one)."""
    if generator is None:
        return 0
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))


class _NCHWGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous (NCHW) gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class LibraryModel(nn.Module):
    """``model`` as the libraries see it: contiguous NCHW input gradients, whatever the model's memory format.

    AutoAttack and torchattacks ``.view()`` input gradients, which fails on the
    channels_last gradients a channels_last model (``perf.channels_last``) gives back.
    x: (B, C, H, W) -> logits (B, K), as ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_NCHWGrad.apply(x.contiguous()))


class ReferenceSettings(Attack):
    """The AutoAttack "standard" settings shared by every backend's wrappers.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model; eps (and ``norm``, "linf" or "l2") are used.
        steps: iterations of APGD / FAB (standard 100).
        restarts: restarts (standard 1).
        n_queries: Square's query budget (standard 5000).
        n_target_classes: targets of APGD-T / FAB-T, capped at K - 1 (standard 9).
    """

    family: str = ""  # "apgd-ce", "apgd-t", "fab-t", "square", "autoattack"
    backend: str = ""  # "autoattack" (official) or "torchattacks"
    backend_version: Any = None  # a PackageVersion in each backend's base
    shown: tuple[str, ...] = ("steps", "restarts", "n_queries", "n_target_classes")  # in repr
    identity = shown

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
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
        return (f"{type(self).__name__}(eps={self.threat.eps}, {settings}, "
                f"backend={self.backend!r}, backend_version={self.backend_version!r})")

    def _targets(self, num_classes: int) -> int:
        return max(1, min(self.n_target_classes, num_classes - 1))


class LibraryAttack(ReferenceSettings):
    r"""Runs a library attack safely; subclasses implement :meth:`run`.

    Each call draws one seed from ``generator`` and runs the library attack
    inside ``torch.random.fork_rng`` (both libraries reseed the global RNG;
    ours is left untouched), with parameters frozen (no ``.grad``) and the
    model in eval mode (any mode switching of the library is undone by our
    base class). Outputs are projected by the shared threat model.
    Arguments: see :class:`ReferenceSettings`.
    """

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        if self.threat.eps == 0:
            return x.clone()
        seed = _seed(generator)
        with torch.no_grad():
            num_classes = self.model(x[:1]).shape[1]
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _no_parameter_grads(self.model), torch.enable_grad():
            x_adv = self.run_library(x.contiguous(), y, num_classes, seed)
        return self.threat.project(x_adv.to(x.dtype), x)

    @abstractmethod
    def run_library(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
        """Adversarial images (B, C, H, W) from the library, before our projection."""


class OfficialAttack(LibraryAttack):
    """Base of the official wrappers: the library's ``AutoAttack(version="standard")`` configures them.

    Our settings (see :class:`ReferenceSettings`) are then set on its
    components; at their defaults they are the standard ones, so nothing changes.
    """

    backend = "autoattack"
    backend_version = PackageVersion("pyautoattack", "autoattack")

    def standard(self, device: torch.device, seed: int, num_classes: int) -> Any:
        """The official ``AutoAttack`` object, "standard" version, with our budget."""
        aa = _official().AutoAttack(LibraryModel(self.model), norm=official_norm(self.threat), eps=self.threat.eps,
                                    seed=seed, version="standard", device=device)
        aa.verbose = False
        if self.steps != aa.apgd.n_iter:
            _set_apgd_iterations(aa.apgd, self.steps)
            _set_apgd_iterations(aa.apgd_targeted, self.steps)
            aa.fab.n_iter = self.steps
        for part in (aa.apgd, aa.apgd_targeted, aa.fab, aa.square):
            part.n_restarts = self.restarts
        aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = self._targets(num_classes)
        aa.square.n_queries = self.n_queries
        return aa

    def run_library(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
        return self.attack(self.standard(x.device, seed, num_classes), x, y)

    @abstractmethod
    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Run this attack's component of ``aa`` as the library's ``run_standard_evaluation`` does."""


class APGDCE(OfficialAttack):
    r"""APGD on cross-entropy (official implementation): step-size-free PGD with momentum.

    Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with
    an ensemble of diverse parameter-free attacks", ICML 2020.
    Threat model: L-inf (or L2) ball of radius eps intersected with [0, 1].
    Settings (standard): 100 steps, 1 restart, rho 0.75, no EOT.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = APGDCE(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = family = "apgd-ce"
    shown = ("steps", "restarts")

    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        aa.apgd.loss = "ce"
        return aa.apgd.perturb(x, y)


class APGDT(OfficialAttack):
    r"""Targeted APGD on the targeted DLR loss over the top-9 non-true classes (official).

    Paper: Croce & Hein, ICML 2020.
    Threat model: L-inf (or L2) ball of radius eps intersected with [0, 1].
    Settings (standard): 100 steps, 1 restart per target, 9 target classes
    (K - 1 if fewer), rho 0.75. Needs K >= 4 (DLR loss).
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = APGDT(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = family = "apgd-t"
    shown = ("steps", "restarts", "n_target_classes")

    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return aa.apgd_targeted.perturb(x, y)


class FABT(OfficialAttack):
    r"""Targeted FAB (official): minimum-norm boundary attack over the top-9 non-true classes.

    Paper: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast
    Adaptive Boundary Attack", ICML 2020.
    Threat model: L-inf (or L2); a found image counts only within eps (else clean).
    Settings (standard): 100 steps, 1 restart, 9 target classes,
    alpha_max 0.1, eta 1.05, beta 0.9.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = FABT(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = family = "fab-t"
    shown = ("steps", "restarts", "n_target_classes")

    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        aa.fab.targeted = True
        return aa.fab.perturb(x, y)


class Square(OfficialAttack):
    r"""Square Attack (official): score-based random search over square updates (black box).

    Paper: Andriushchenko et al., "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020.
    Threat model: L-inf (or L2) ball of radius eps intersected with [0, 1].
    Settings (standard): 5000 queries, 1 restart, p_init 0.8, margin loss,
    no rescaled schedule.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = Square(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = family = "square"
    black_box = True
    shown = ("n_queries", "restarts")

    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return aa.square.perturb(x, y)


class AutoAttack(OfficialAttack):
    r"""AutoAttack "standard" (official ``run_standard_evaluation``): APGD-CE, APGD-T, FAB-T, Square.

    Paper: Croce & Hein, ICML 2020. The library's own cascade: each attack
    runs only on the examples all earlier ones failed on, with one seed for
    every component (drawn from ``generator``), and the library's checks
    (randomness, softmax outputs, dynamic models) warn where they apply.
    Threat model: L-inf (or L2) ball of radius eps intersected with [0, 1].
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).

    Example:
        >>> x_adv = AutoAttack(model, LinfThreat(0.031, 0.0))(x, y, torch.Generator().manual_seed(0))
    """

    name = family = "autoattack"

    def attack(self, aa: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = inspect.signature(aa.run_standard_evaluation).parameters
        size = {"batch_size" if "batch_size" in params else "bs": len(x)}  # PyPI wheel / git version
        out = aa.run_standard_evaluation(x, y, **size)
        return out[0] if isinstance(out, tuple) else out


# --- the torchattacks backend -------------------------------------------------------------------


class TorchattacksAttack(LibraryAttack):
    """Base of the torchattacks wrappers; subclasses build the attack in :meth:`build`."""

    backend = "torchattacks"
    backend_version = PackageVersion("torchattacks")

    @abstractmethod
    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        """The torchattacks attack for a model with ``num_classes`` outputs."""

    def run_library(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
        return self.build(_torchattacks(), num_classes, seed)(x, y)


class TorchattacksAPGDCE(TorchattacksAttack):
    """:class:`APGDCE` through torchattacks' ``APGD`` (same standard settings)."""

    name = family = "apgd-ce"
    shown = ("steps", "restarts")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        return ta.APGD(self.model, norm=official_norm(self.threat), eps=self.threat.eps, steps=self.steps,
                       n_restarts=self.restarts, seed=seed, loss="ce", eot_iter=1, rho=0.75)


class TorchattacksAPGDT(TorchattacksAttack):
    """:class:`APGDT` through torchattacks' ``APGDT`` (same standard settings)."""

    name = family = "apgd-t"
    shown = ("steps", "restarts", "n_target_classes")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        attack = ta.APGDT(self.model, norm=official_norm(self.threat), eps=self.threat.eps, steps=self.steps,
                          n_restarts=self.restarts, seed=seed, eot_iter=1, rho=0.75, n_classes=num_classes)
        attack.n_target_classes = self._targets(num_classes)
        return attack


class TorchattacksFABT(TorchattacksAttack):
    """:class:`FABT` through torchattacks' ``FAB`` with ``multi_targeted`` (same standard settings)."""

    name = family = "fab-t"
    shown = ("steps", "restarts", "n_target_classes")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        attack = ta.FAB(self.model, norm=official_norm(self.threat), eps=self.threat.eps, steps=self.steps,
                        n_restarts=self.restarts, alpha_max=0.1, eta=1.05, beta=0.9, seed=seed,
                        multi_targeted=True, n_classes=num_classes)
        attack.n_target_classes = self._targets(num_classes)
        return attack


class TorchattacksSquare(TorchattacksAttack):
    """:class:`Square` through torchattacks' ``Square`` (same standard settings)."""

    name = family = "square"
    black_box = True
    shown = ("n_queries", "restarts")

    def build(self, ta: Any, num_classes: int, seed: int) -> Any:
        return ta.Square(self.model, norm=official_norm(self.threat), eps=self.threat.eps, n_queries=self.n_queries,
                         n_restarts=self.restarts, p_init=0.8, loss="margin", resc_schedule=False, seed=seed)


class TorchattacksAutoAttack(ReferenceSettings):
    r"""AutoAttack "standard" as a cascade of the torchattacks wrappers.

    The cascade is ours (per-example robust flags; each attack runs only on
    examples all earlier ones failed on), with the standard settings of each
    component rather than torchattacks' ``AutoAttack``, whose components run
    10 steps. Every component gets its own seed from ``generator``.
    Shapes: x (B, C, H, W) in [0, 1], y (B,) -> (B, C, H, W).
    """

    name = family = "autoattack"
    backend = "torchattacks"
    backend_version = PackageVersion("torchattacks")
    components = (TorchattacksAPGDCE, TorchattacksAPGDT, TorchattacksFABT, TorchattacksSquare)

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


# family -> backend -> class: what the registry builds for "apgd-ce", ... with ``backend=``. Read-only.
BY_BACKEND: Mapping[str, Mapping[str, type[ReferenceSettings]]] = MappingProxyType({
    cls.family: MappingProxyType({"autoattack": cls, "torchattacks": ta})
    for cls, ta in ((APGDCE, TorchattacksAPGDCE), (APGDT, TorchattacksAPGDT), (FABT, TorchattacksFABT),
                    (Square, TorchattacksSquare), (AutoAttack, TorchattacksAutoAttack))
})
