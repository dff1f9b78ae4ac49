"""Auto-PGD (APGD): step-size-free PGD with momentum and checkpoints, on the CE, DLR or targeted DLR loss.

Our own implementation of Algorithm 1 of Croce & Hein, ICML 2020, on the
shared threat objects, with the properties of our PGD: examples that fooled
the model leave the batch (compaction), randomness only from an explicit
``torch.Generator``, and no host synchronisation in the loop but the bounded
compaction one. The schedule follows the official ``autopgd_base.py``
(see :func:`checkpoints` and :class:`APGD`).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, rows
from .cost import charging, uncharged
from .pgd import _Active, compaction_interval, grad_and_logits
from .threat import Threat

APGD_LOSSES = ("ce", "dlr")
MOMENTUM = 0.75  # alpha of Algorithm 1
RHO = 0.75  # condition 1: fewer than this share of loss-increasing steps since the last checkpoint
_TINY = 1e-12


def checkpoints(steps: int) -> dict[int, int]:
    """Iterations (0-based) that end a checkpoint window -> the window's length.

    Official schedule: first window ``max(int(0.22 n), 1)`` iterations, each next
    one ``max(int(0.03 n), 1)`` shorter, never below ``max(int(0.06 n), 1)``:
    checkpoints w_j = ceil(p_j n) with p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06). For n = 100:
    {21: 22, 40: 19, 56: 16, 69: 13, 79: 10, 86: 7, 92: 6, 98: 6}.
    """
    k, decrease, least = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, end = {}, k - 1
    while end < steps:
        out[end] = k
        k = max(k - decrease, least)
        end += k
    return out


def dlr_losses(logits: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example DLR loss (goal None) or targeted DLR loss toward ``goal`` (B,).

    DLR: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3); DLR-T:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), pi the logits sorted in
    decreasing order. logits (B, K), K >= 3 (DLR) or >= 4 (DLR-T); returns (B,).
    """
    need = 3 if goal is None else 4
    if logits.shape[1] < need:
        raise ValueError(f"the {'targeted ' if goal is not None else ''}DLR loss needs at least {need} classes")
    z, _ = logits.sort(dim=1)  # ascending: z[:, -1] is pi1
    true = logits.gather(1, y[:, None]).squeeze(1)
    if goal is not None:
        return -(true - logits.gather(1, goal[:, None]).squeeze(1)) / (z[:, -1] - 0.5 * (z[:, -3] + z[:, -4]) + _TINY)
    top_is_y = logits.argmax(dim=1) == y
    other = torch.where(top_is_y, z[:, -2], z[:, -1])
    return -(true - other) / (z[:, -1] - z[:, -3] + _TINY)


def apgd_losses(loss: str, logits: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
    """Per-example loss APGD ascends (B,): CE or DLR (goal None), -CE toward goal or DLR-T (targeted)."""
    if loss == "dlr":
        return dlr_losses(logits, y, goal)
    if goal is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, goal, reduction="none")


def apgd_start(threat: Threat, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The official start: a random direction scaled onto the eps-sphere of the norm, clipped to [0, 1].

    L-inf: uniform noise in [-1, 1] divided by its largest entry; L2: Gaussian
    noise divided by its L2 norm. x: (B, C, H, W); drawn for the whole batch.
    """
    if threat.norm == "linf":
        noise = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
    else:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    delta = noise / rows(threat.distance(noise) + _TINY, noise)
    return threat.project(x + threat.eps * delta, x)


def _direction(threat: Threat, grad: torch.Tensor) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: sign(grad) (L-inf) or grad / ||grad||_2 (L2)."""
    if threat.norm == "linf":
        return grad.sign()
    return grad / rows(threat.distance(grad) + _TINY, grad)


@dataclass
class Outcome:
    """What one APGD run found per example of the batch (B rows).

    fooled: (B,) bool; best: (B, C, H, W) the first fooling image where fooled,
    else the highest-loss point; best_logits: (B, K) logits at the highest-loss
    point (stale for rows the run did not attack).
    """

    fooled: torch.Tensor
    best: torch.Tensor
    best_logits: torch.Tensor | None = None  # allocated (B, K) at the first record


class APGDEngine:
    """One APGD run over a batch, compacted to the examples not yet fooled (see :class:`APGD`)."""

    def __init__(self, model: nn.Module, threat: Threat, steps: int, loss: str, every: int, rho: float = RHO) -> None:
        self.model, self.threat, self.steps, self.loss, self.every, self.rho = model, threat, steps, loss, every, rho

    def _gradient(self, act: _Active) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores the input gradient of the summed loss at act.x_adv in act.grad; returns logits (A, K), loss (A,)."""
        objective = lambda z, y: apgd_losses(self.loss, z, y, act.goal).sum()  # noqa: E731
        with charging(act.idx):
            act.tensors["grad"], logits = grad_and_logits(self.model, act.x_adv, act.y, objective)
        return logits, apgd_losses(self.loss, logits, act.y, act.goal)

    def _record(self, out: Outcome, act: _Active, logits: torch.Tensor, loss: torch.Tensor) -> None:
        """Store first fooling images and the best-loss point (strictly higher loss) of the active rows."""
        before = out.fooled[act.idx]
        new = (logits.argmax(dim=1) != act.y) & ~before
        better = loss > act.loss_best
        act.tensors.update(x_best=torch.where(rows(better, act.x_adv), act.x_adv, act.x_best),
                           grad_best=torch.where(rows(better, act.grad), act.grad, act.grad_best),
                           loss_best=torch.where(better, loss, act.loss_best),
                           logits_best=torch.where(better[:, None], logits, act.logits_best))
        kept = torch.where(rows(before, act.x_adv), out.best[act.idx], act.x_best)  # a first fooling image stays
        out.best.index_copy_(0, act.idx, torch.where(rows(new, act.x_adv), act.x_adv, kept))
        if out.best_logits is None:
            out.best_logits = logits.new_zeros((len(out.fooled), logits.shape[1]))
        out.best_logits.index_copy_(0, act.idx, act.logits_best)
        out.fooled.index_copy_(0, act.idx, before | new)

    def _step(self, act: _Active, momentum: float) -> None:
        """x <- P(x + a (P(x + eta d(grad)) - x) + (1 - a)(x - x_old)), eta per example."""
        x_adv, x_old = act.x_adv, act.x_old
        z = self.threat.project(x_adv + rows(act.eta, x_adv) * _direction(self.threat, act.grad), act.x)
        act.tensors.update(x_old=x_adv, x_adv=self.threat.project(
            x_adv + (z - x_adv) * momentum + (x_adv - x_old) * (1 - momentum), act.x))

    def _checkpoint(self, act: _Active, window: int) -> None:
        """Halve eta and restart from the best point (and its gradient) where condition 1 or 2 holds."""
        cond1 = act.increases <= window * self.rho  # official: at most rho * window increasing steps
        cond2 = ~act.reduced & (act.loss_best_last >= act.loss_best)
        cut = cond1 | cond2
        act.tensors.update(eta=torch.where(cut, act.eta / 2, act.eta), reduced=cut, loss_best_last=act.loss_best,
                           increases=torch.zeros_like(act.increases),
                           x_adv=torch.where(rows(cut, act.x_adv), act.x_best, act.x_adv),
                           grad=torch.where(rows(cut, act.grad), act.grad_best, act.grad))

    def run(self, x: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None, todo: torch.Tensor,
            start: torch.Tensor, out: Outcome) -> Outcome:
        """APGD from ``start`` on the rows ``todo & ~out.fooled`` (B,); updates and returns ``out``."""
        act = _Active(torch.arange(len(y), device=y.device), x=x, y=y, goal=goal, x_adv=start).keep(todo & ~out.fooled)
        if not len(act):
            return out
        logits, loss = self._gradient(act)
        act.tensors.update(x_best=act.x_adv, grad_best=act.grad, loss_best=loss, logits_best=logits, x_old=act.x_adv,
                           eta=torch.full_like(loss, 2 * self.threat.eps),
                           reduced=torch.ones_like(loss, dtype=torch.bool),
                           loss_best_last=loss, increases=torch.zeros_like(loss), loss_prev=torch.zeros_like(loss))
        self._record(out, act, logits, loss)
        marks = checkpoints(self.steps)
        for i in range(self.steps):
            if self.every and i % self.every == 0:
                act = act.keep(~out.fooled[act.idx])  # the only host sync: who is left
            if not len(act):
                break
            self._step(act, 1.0 if i == 0 else MOMENTUM)
            logits, loss = self._gradient(act)
            act.tensors.update(increases=act.increases + (loss > act.loss_prev).to(loss.dtype), loss_prev=loss)
            self._record(out, act, logits, loss)
            if i in marks:
                self._checkpoint(act, marks[i])
        return out


class SurvivorAttack(Attack):
    """An attack that works on the examples still robust: ``_perturb`` with or without the clean check."""

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self._perturb(x, y, generator, check_clean=True)

    def perturb_clean_correct(self, x: torch.Tensor, y: torch.Tensor,
                              generator: torch.Generator | None) -> torch.Tensor:
        """As :meth:`perturb`, without the forward pass that checks the clean images."""
        return self._perturb(x, y, generator, check_clean=False)

    @abstractmethod
    def _perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                 check_clean: bool) -> torch.Tensor:
        """Adversarial images (B, C, H, W); ``check_clean``: first find the clean-misclassified examples."""


class APGD(SurvivorAttack):
    r"""Auto-PGD on the CE, DLR or targeted DLR loss, with compaction.

    Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with
    an ensemble of diverse parameter-free attacks", ICML 2020, Algorithm 1.
    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1], projected by the shared threat object; ``threat.step_size``
    is unused (the step size adapts).

    Schedule, as the official ``autopgd_base.py``: start on the eps-sphere
    (:func:`apgd_start`); initial step 2 eps (both norms); first step without
    momentum, then momentum 0.75; checkpoints :func:`checkpoints` (22, 41,
    57, ... of 100); at a checkpoint the step is halved and the iterate
    restarts from the highest-loss point (with its gradient) where condition
    1 (at most rho = 0.75 of the window's steps increased the loss; the loss
    before the first step counts as 0, as in the official code) or condition
    2 (the step was not halved at the previous checkpoint and the best loss
    did not improve since) holds. Each run spends steps + 1 gradient passes
    per example still in the batch (the start and every step).

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model (norm, eps, projection).
        steps: iterations per restart (standard 100).
        loss: "ce" (APGD-CE) or "dlr" (APGD-DLR; with ``target``, the targeted
            DLR loss of APGD-T); with ``target`` and "ce": minus CE toward it.
        target: None (untargeted) or a class index: the loss pulls toward it.
            Success is always misclassification (as in APGD-T); examples of
            that class are not attacked (their clean image is returned).
        restarts: independent runs on the examples not yet fooled, each with
            a start drawn from ``generator`` for the whole batch.
        compact_every: as :class:`~classwise.attacks.PGD` (None: 1 on the CPU,
            4 on a GPU; 0: never); per-sample results do not depend on it.
            Host syncs: one ``nonzero`` per run to pick the rows it attacks,
            plus one per compaction (at most ceil(steps / compact_every)).

    Returned per example: the first image that fooled the model, else the
    highest-loss point found, or the clean image if misclassified when clean.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = APGD(model, LinfThreat(eps=8 / 255, step_size=0.0), steps=100, loss="ce")
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
        >>> APGD(model, threat, loss="dlr", target=3)(x, y)  # APGD-DLR-T toward class 3
    """

    name = "apgd"
    identity = ("steps", "loss", "target", "restarts")
    record_fill = MappingProxyType({})

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, loss: str = "ce",
                 target: int | str | None = None, restarts: int = 1, *, compact_every: int | None = None) -> None:
        super().__init__(model, threat)
        _check_apgd(steps, restarts, loss, compact_every)
        self.target = _check_class(target)
        self.steps, self.loss, self.restarts, self.compact_every = steps, loss, restarts, compact_every

    def _perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None,
                 check_clean: bool) -> torch.Tensor:
        todo, out = start_outcome(self.model, x, y, check_clean)
        goal = None if self.target is None else torch.full_like(y, self._checked_target(x))
        if goal is not None:
            todo = todo & (goal != y)
        engine = APGDEngine(self.model, self.threat, self.steps, self.loss, compact(self.compact_every, x))
        for _ in range(self.restarts):
            out = engine.run(x, y, goal, todo, apgd_start(self.threat, x, generator), out)
        return finish(out, x, todo)

    @torch.no_grad()
    def _checked_target(self, x: torch.Tensor) -> int:
        """The target class, after one probe (charged to no example) that the model has it."""
        with uncharged():
            classes = self.model(x[:1]).shape[1]
        target = int(self.target or 0)
        if target >= classes:
            raise ValueError(f"target class {target} is not a class of this model ({classes} classes)")
        return target

    def __repr__(self) -> str:
        return (f"APGD(norm={self.threat.norm!r}, eps={self.threat.eps}, steps={self.steps}, loss={self.loss!r}, "
                f"target={self.target!r}, restarts={self.restarts})")


def compact(compact_every: int | None, x: torch.Tensor) -> int:
    """Iterations between compactions (0: never) for images x."""
    return compaction_interval(x.device) if compact_every is None else compact_every


@torch.no_grad()
def start_outcome(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  check_clean: bool) -> tuple[torch.Tensor, Outcome]:
    """Rows to attack (B,) (clean-correct ones when ``check_clean``) and an empty :class:`Outcome`."""
    todo = torch.ones_like(y, dtype=torch.bool)
    if check_clean:
        todo = model(x).argmax(dim=1) == y
    return todo, Outcome(torch.zeros_like(todo), x.clone())


def finish(out: Outcome, x: torch.Tensor, todo: torch.Tensor) -> torch.Tensor:
    """Per example the outcome's image where attacked, else the clean image."""
    return torch.where(rows(todo, x), out.best, x)


def _check_class(target: int | str | None) -> int | None:
    if isinstance(target, str) and target.strip().isdigit():
        target = int(target)
    if target is None or (isinstance(target, int) and not isinstance(target, bool) and target >= 0):
        return target
    raise ValueError(f"apgd target must be a class index >= 0, got {target!r}")


def _check_apgd(steps: int, restarts: int, loss: str, compact_every: int | None) -> None:
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    if loss not in APGD_LOSSES:
        raise ValueError(f"unknown apgd loss {loss!r}; known: {', '.join(APGD_LOSSES)}")
    if compact_every is not None and compact_every < 0:
        raise ValueError(f"compact_every must be >= 0 (0: never), got {compact_every}")


__all__ = ["APGD", "APGDEngine", "Outcome", "apgd_losses", "apgd_start", "checkpoints", "dlr_losses"]
