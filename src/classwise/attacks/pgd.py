"""Projected gradient descent (PGD) under the L-inf or L2 threat model, untargeted or targeted."""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

import torch
from torch import nn

from .base import Attack, LossFn, eval_mode, rows
from .cost import charging
from .losses import make_loss, true_class_mask
from .threat import Threat

TARGET_MODES = ("likely", "all")  # besides a class index: the most likely wrong class, every class in turn
Target = int | str | None
# Steps between two compactions of the active batch on an accelerator (see compaction_interval).
COMPACT_EVERY_ACCELERATOR = 4


def compaction_interval(device: torch.device) -> int:
    """Steps between two compactions of an evaluation attack's active batch on ``device``.

    A compaction drops the examples that fooled the model since the last one;
    it reads their flags back to the host (one ``nonzero``: one host sync). On
    the CPU a sync costs nothing, so examples leave at once (1). On a GPU a sync
    drains the queue of kernels, so examples leave every
    ``COMPACT_EVERY_ACCELERATOR`` (4) steps: at most ceil(steps / 4) syncs per
    restart, while a fooled example spends at most 3 extra steps in the batch.
    """
    return 1 if device.type == "cpu" else COMPACT_EVERY_ACCELERATOR


def grad_and_logits(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradient of ``loss_fn(model(x), y)`` and the (detached) logits.

    Like :func:`classwise.attacks.base.input_grad` (parameters get no .grad),
    but it also hands back the logits of the same forward pass, and it works
    inside an outer ``torch.no_grad()``. x: (B, C, H, W); returns grad
    (B, C, H, W) and logits (B, K).
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(loss_fn(logits, y), x)
    return grad, logits.detach()


def check_target(target: Target) -> Target:
    """``target`` validated: None (untargeted), a class index >= 0, "likely" or "all".

    Digit strings (from a spec such as "pgd20@target=3") become ints.
    """
    if isinstance(target, str) and target.strip().isdigit():
        target = int(target)
    if target is None or target in TARGET_MODES or (isinstance(target, int) and not isinstance(target, bool)
                                                     and target >= 0):
        return target
    raise ValueError(f"target must be a class index >= 0, 'likely' (most likely wrong class) or 'all', got {target!r}")


def _success(logits: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
    """(B,) bool: misclassified (goal None) or classified as ``goal`` != y (targeted)."""
    pred = logits.argmax(dim=1)
    return pred != y if goal is None else (pred == goal) & (goal != y)


def _keep_fooling(
    best: torch.Tensor, fooled: torch.Tensor, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
    goal: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Store ``x_adv`` for examples it fools (or pushes into ``goal``) for the first time (no host sync)."""
    new = _success(logits, y, goal) & ~fooled  # (B,)
    return torch.where(rows(new, x_adv), x_adv, best), fooled | new


def _keep_fooling_at(
    idx: torch.Tensor, best: torch.Tensor, fooled: torch.Tensor, x_adv: torch.Tensor, logits: torch.Tensor,
    y: torch.Tensor, goal: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_keep_fooling` for the rows ``idx`` (A,) of the batch: x_adv (A, ...), logits (A, K), y, goal (A,).

    Updates ``best`` (B, ...) and ``fooled`` (B,) in place (no host sync) and returns them.
    """
    new = _success(logits, y, goal) & ~fooled[idx]  # (A,)
    best.index_copy_(0, idx, torch.where(rows(new, x_adv), x_adv, best[idx]))
    return best, fooled.index_copy_(0, idx, fooled[idx] | new)


class _Active:
    """The rows of a batch an attack still works on: their positions ``idx`` (A,) and their tensors.

    ``keep(mask)`` drops the rows where ``mask`` (A,) is False: one ``nonzero``,
    the compaction's only host sync. Row indexing keeps the memory format.
    """

    def __init__(self, idx: torch.Tensor, **tensors: torch.Tensor | None) -> None:
        self.idx, self.tensors = idx, tensors

    def keep(self, mask: torch.Tensor) -> _Active:
        sel = mask.nonzero().squeeze(1)  # (A',)
        return _Active(self.idx[sel], **{k: None if t is None else t[sel] for k, t in self.tensors.items()})

    def __getattr__(self, name: str) -> torch.Tensor:
        return self.__dict__["tensors"][name]

    def __len__(self) -> int:
        return len(self.idx)


def _toward(logits: torch.Tensor, goal: torch.Tensor, loss: LossFn) -> torch.Tensor:
    """Targeted loss: minus the untargeted loss at label ``goal`` (CE toward goal; CW: z_goal - max_other)."""
    return -loss(logits, goal)


def target_columns(target: Target, logits: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The target class per example (B,) int64 of each targeted run, from clean logits (B, K).

    A class index: one run with that class; "likely": one run with the most
    likely wrong class; "all": K runs, class 0, 1, ..., K-1 (rows whose label is
    the run's class are skipped by the caller).
    """
    k = logits.shape[1]
    if isinstance(target, int):
        if target >= k:
            raise ValueError(f"target class {target} is not a class of this model ({k} classes)")
        return [torch.full_like(y, target)]
    if target == "likely":
        return [logits.masked_fill(true_class_mask(y, k), float("-inf")).argmax(dim=1)]
    return [torch.full_like(y, j) for j in range(k)]


class PGD(Attack):
    r"""PGD with random start, restarts and a choice of loss.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", ICLR 2018. Temperature-PGD (``temperature != 1``): section 4 of
    "Intriguing class-wise properties of adversarial training".

    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1]; ``steps`` steps of ``threat.step_size`` (signed gradient under
    L-inf, L2-normalised gradient under L2), each projected by the shared
    threat object (:class:`~classwise.attacks.threat.LinfThreat`,
    :class:`~classwise.attacks.threat.L2Threat`).

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model (norm, eps, step size, projection).
        steps: gradient steps per restart (>= 1).
        random_start: start each restart uniformly in the ball.
        restarts: independent runs (>= 1); each draws its random start from
            ``generator`` in order, and nothing else is drawn from it.
        loss: "ce" (cross-entropy) or "cw" (Carlini-Wagner margin).
        temperature: T > 0; the loss sees ``logits / T``.
        keep_best: True (evaluation): per example, return the first iterate
            that fooled the model, the clean image counting as the first
            candidate (so robust accuracy <= clean accuracy, as in AutoAttack),
            else the last iterate. Fooling is read from the logits of the
            forward pass that computes each gradient; with a fixed seed, more
            steps or restarts only grow the set of fooled examples. An example
            whose first fooling image is stored can no longer change its result,
            so it leaves the batch (see ``compact_every``): work follows the
            examples still robust. False (training, as Madry et al.): return
            the last iterate of every example, full batch and no host sync;
            needs ``restarts == 1``.
        target: None (untargeted), a class index j (descend the loss toward
            j; success = classified as j), "likely" (toward each example's
            most likely wrong class on the clean image) or "all" (one targeted
            run per class j != y, in class order). Examples whose label is the
            target are not attacked (their clean image is returned) and never
            count as a success; neither do examples misclassified when clean
            (they keep their clean image). Returned: per example the first
            image that fooled the model over the runs, else the clean image. :meth:`run`
            also returns "target_hits" (B, K) int8: 1 where the run toward
            class j ended classified as j, 0 where it did not, -1 where j was
            not tried. Needs ``keep_best=True``; each run attacks only the
            rows it tries.
        compact_every: with ``keep_best``, steps between two compactions of the
            batch (dropping the examples that fooled): None (default) picks
            :func:`compaction_interval` of the images' device (1 on the CPU, 4
            on a GPU), 0 never compacts (the full batch every step, no host
            sync). Results are the same either way: random starts are drawn
            for the whole batch and losses are sums, so each example follows
            the same iterates. It is how the attack runs, not what it computes:
            not one of its :meth:`facts`.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = PGD(model, LinfThreat(eps=8 / 255, step_size=2 / 255), steps=20)
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
        >>> x_adv, rec = PGD(model, threat, steps=20, target="all").run(x, y)  # rec["target_hits"]: (B, K)
    """

    name = "pgd"
    identity: tuple[str, ...] = ("steps", "restarts", "random_start", "loss", "temperature", "keep_best", "target")
    record_fill = MappingProxyType({"target_hits": -1})

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        steps: int,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        temperature: float = 1.0,
        keep_best: bool = True,
        target: Target = None,
        *,
        compact_every: int | None = None,
    ) -> None:
        super().__init__(model, threat)
        _check_counts(steps, restarts, keep_best)
        if compact_every is not None and compact_every < 0:
            raise ValueError(f"compact_every must be >= 0 (0: never), got {compact_every}")
        self.target = check_target(target)
        if self.target is not None and not keep_best:
            raise ValueError("a targeted attack needs keep_best=True (it returns the image that reached its target)")
        self.loss_fn = make_loss(loss, temperature)
        self.steps, self.restarts, self.random_start = steps, restarts, random_start
        self.loss, self.temperature, self.keep_best = loss, temperature, keep_best
        self.compact_every = compact_every

    def run(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
        *, clean_correct: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """As ``attack(x, y)``; targeted attacks also return "target_hits" (B, K) int8."""
        if self.target is None:
            return super().run(x, y, generator, clean_correct=clean_correct)
        with eval_mode(self.model):
            x_adv, hits = self._targeted(x.detach(), y, generator, check_clean=not clean_correct)
        return x_adv.detach(), {"target_hits": hits}

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self._perturb(x, y, generator, check_clean=True)

    def perturb_clean_correct(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """As :meth:`perturb`, without the forward pass that checks whether x itself fools."""
        return self._perturb(x, y, generator, check_clean=False)

    def _perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None, check_clean: bool
    ) -> torch.Tensor:
        if self.target is None:
            return self._attack(x, y, None, generator, check_clean)
        return self._targeted(x, y, generator, check_clean)[0]

    def _targeted(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None, check_clean: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One targeted run per target column; first fooling image (else x) and hits (B, K) int8."""
        logits = self._logits(x)
        hits = torch.full(logits.shape, -1, dtype=torch.int8, device=x.device)
        fooled = logits.argmax(dim=1) != y  # misclassified when clean: kept clean, not attacked
        best, clean_wrong = x.clone(), fooled.clone()
        for goal in target_columns(self.target, logits, y):
            tried = (goal != y) & ~clean_wrong
            x_goal = self._attack(x, y, goal, generator, check_clean, skip=~tried)
            logits_goal = self._logits(x_goal)
            hit = _success(logits_goal, y, goal).to(torch.int8)
            hits.scatter_(1, goal[:, None], torch.where(tried, hit, -1).to(torch.int8)[:, None])
            new = (logits_goal.argmax(dim=1) != y) & tried & ~fooled
            best, fooled = torch.where(rows(new, x), x_goal, best), fooled | new
        return best, hits

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None, generator: torch.Generator | None,
        check_clean: bool, skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """All restarts, untargeted (goal None) or toward ``goal`` (B,).

        ``skip`` (B,) bool: rows whose result the caller discards (a compacting
        attack never works on them; they come back unattacked).
        """
        best, fooled = x.clone(), torch.zeros_like(y, dtype=torch.bool)
        if self.keep_best and self.random_start and check_clean:  # else the first step's forward sees x
            best, fooled = _keep_fooling(best, fooled, x, self._logits(x), y, goal)
        every = self._compaction(x)
        for restart in range(self.restarts):
            more = restart + 1 < self.restarts  # the next restart replaces x_adv: judge this one's last iterate
            if every:
                x_adv, best, fooled = self._descend_active(x, y, goal, generator, best, fooled, every, more, skip)
                continue
            x_adv, best, fooled = self._descend(x, y, goal, generator, best, fooled)
            if more:
                best, fooled = _keep_fooling(best, fooled, x_adv, self._logits(x_adv), y, goal)
        if not self.keep_best:
            return x_adv
        return torch.where(rows(fooled, x), best, x_adv)

    def _compaction(self, x: torch.Tensor) -> int:
        """Steps between compactions for images x (0: never; always 0 for last-iterate training attacks)."""
        if not self.keep_best:
            return 0
        return compaction_interval(x.device) if self.compact_every is None else self.compact_every

    def _descend(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        goal: torch.Tensor | None,
        generator: torch.Generator | None,
        best: torch.Tensor,
        fooled: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart on the full batch; returns its last iterate and the updated best/fooled."""
        label, loss_fn = self._objective(y, goal)
        x_adv = self.threat.random_init(x, generator) if self.random_start else x.clone()
        for _ in range(self.steps):
            grad, logits = grad_and_logits(self.model, x_adv, label, loss_fn)
            best, fooled = _keep_fooling(best, fooled, x_adv, logits, y, goal)
            x_adv = self.threat.step(x_adv, grad, x)
        return x_adv, best, fooled

    def _descend_active(
        self, x: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None, generator: torch.Generator | None,
        best: torch.Tensor, fooled: torch.Tensor, every: int, judge_last: bool, skip: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart on the examples not yet fooled, compacted every ``every`` steps.

        Each example follows :meth:`_descend`'s iterates: the random start is
        drawn for the whole batch (the generator's draws do not depend on who
        is left), losses are sums (a row's gradient ignores the other rows), and
        an example leaves only once its first fooling image is in ``best``,
        which then never changes. Returns the last iterate (B, ...) (rows that
        left: their start; they return ``best``), best and fooled.
        """
        label, loss_fn = self._objective(y, goal)
        start = self.threat.random_init(x, generator) if self.random_start else x.clone()
        todo = ~fooled if skip is None else ~fooled & ~skip
        act = _Active(torch.arange(len(y), device=y.device), x=x, y=y, label=label, goal=goal, x_adv=start)
        for step in range(self.steps):
            if step % every == 0:
                act = act.keep(todo[act.idx] & ~fooled[act.idx])
            if not len(act):
                break
            with charging(act.idx):  # each example pays for the steps it is in
                grad, logits = grad_and_logits(self.model, act.x_adv, act.label, loss_fn)
            best, fooled = _keep_fooling_at(act.idx, best, fooled, act.x_adv, logits, act.y, act.goal)
            act.tensors["x_adv"] = self.threat.step(act.x_adv, grad, act.x)
        if judge_last and len(act):
            with charging(act.idx):
                logits = self._logits(act.x_adv)
            best, fooled = _keep_fooling_at(act.idx, best, fooled, act.x_adv, logits, act.y, act.goal)
        return start.index_copy_(0, act.idx, act.x_adv), best, fooled

    def _objective(self, y: torch.Tensor, goal: torch.Tensor | None) -> tuple[torch.Tensor, LossFn]:
        """The labels and loss the steps ascend: (y, loss) untargeted, (goal, minus loss at goal) targeted."""
        return (y, self.loss_fn) if goal is None else (goal, partial(_toward, loss=self.loss_fn))

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(norm={self.threat.norm!r}, eps={self.threat.eps}, "
            f"step_size={self.threat.step_size}, steps={self.steps}, restarts={self.restarts}, "
            f"random_start={self.random_start}, loss={self.loss!r}, temperature={self.temperature}, "
            f"keep_best={self.keep_best}, target={self.target!r})"
        )


def _check_counts(steps: int, restarts: int, keep_best: bool) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if restarts > 1 and not keep_best:
        raise ValueError("restarts > 1 needs keep_best=True (else only the last restart is returned)")
