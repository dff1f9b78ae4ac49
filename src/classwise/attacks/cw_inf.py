"""CW-inf: the Carlini-Wagner L-inf attack (tau-based), as Carmon et al. (RST) run it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, eval_mode, rows
from .losses import cw_margins
from .threat import LinfThreat

TANH_SCALE = 0.999999  # keeps atanh finite at pixels 0 and 1 (Carlini's reference)
_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-7  # the reference's own Adam ("10e-8")
_MIN_PROGRESS = 1e-4  # abort a run whose loss fell less than this since the last check
BOXES = ("project", "tanh")  # how the search keeps images in [0, 1]


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels to the unbounded space ``w`` with ``x = (tanh(w) + 1) / 2``."""
    return torch.atanh((2 * x - 1) * TANH_SCALE)


def from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_tanh_space`; always inside (0, 1)."""
    return (torch.tanh(w) + 1) / 2


def linf_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example L-inf distance of (B, ...) tensors; returns (B,)."""
    return (a - b).abs().flatten(1).amax(dim=1)


@dataclass
class _Search:
    """State of the examples still being searched; every field has n rows.

    index: (n,) positions in the batch. x, warm, delta, m, v: (n, C, H, W):
    clean image, warm start and Adam perturbation (in the search space: pixels,
    or tanh space for ``box="tanh"``), Adam moments.
    it: (n,) Adam steps of the current run; prev: (n,) loss at the last
    progress check; found: (n,) an iterate of this run fooled the model.
    tau, start_tau, const, lower, upper: (n,) the search over tau and c.
    bs: (n,) binary-search steps finished.
    """

    index: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    warm: torch.Tensor
    delta: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    it: torch.Tensor
    prev: torch.Tensor
    found: torch.Tensor
    tau: torch.Tensor
    start_tau: torch.Tensor
    const: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    bs: torch.Tensor

    def keep(self, mask: torch.Tensor) -> _Search:
        return _Search(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})


class CWInf(Attack):
    r"""Carlini-Wagner L-inf: minimum-distance search; robust = nothing found within eps.

    For each example it searches for the smallest L-inf perturbation that
    fools the model. Adam minimises
    ``c * max(z_y - max_{j != y} z_j + confidence, 0) + sum_i max(|delta_i| - tau, 0)``;
    when a run finds an adversarial image, tau becomes
    ``min(tau, ||delta||_inf) * tau_decrease`` and the next run warm-starts
    there, until a run fails or tau <= min_tau. Around that tau loop a search
    over c: x10 until a success, then bisection, ``binary_search_steps``
    times; tau resumes from where the last failure left it. The closest
    fooling image seen at any iterate is kept. Not the fixed-eps "CW" of PGD
    papers: that is :class:`~classwise.attacks.cw_margin.CWMarginPGD` ("cw-margin").

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural
    Networks", IEEE S&P 2017, section 6 (L-inf attack). Settings and search
    as in the foolbox-based ``attack_cw.py`` of Carmon et al., "Unlabeled
    Data Improves Adversarial Robustness", NeurIPS 2019, used by appendix E of
    "Intriguing class-wise properties of adversarial training" (5 binary-search
    steps, 1000 iterations, lr 0.005, c0 = 0.01, tau x0.9; 200 images a class).
    The box constraint [0, 1]: by default (``box="project"``) Adam works on
    the perturbation in pixel space and each step is projected back into the
    box (clip-and-project). The reference's change of variables
    ``x = (tanh(w) + 1) / 2`` (``box="tanh"``) has gradient
    ``(1 - tanh(w)^2) / 2``, about 1e-6 at pixels of exactly 0 or 1 (with
    Carlini's 0.999999 scale), so those pixels barely move: on MNIST, where
    most pixels are 0 or 1, it left the search far weaker than PGD at the same
    eps. The projected search keeps every hyper-parameter of the paper and
    moves saturated pixels inwards like any other.
    Differences: all examples run as one batch (per-example Adam moments,
    step counts and early aborts, so each behaves as if run alone); the
    reference's x10 jump of c when none was found and its abort check every
    tenth of the iterations are kept; its ">= 10 binary steps" quirk is not.

    Threat model: unbounded during the search (only the [0, 1] box); the
    returned image is the closest fooling image found when its L-inf
    distance is <= ``threat.eps``, else the clean image, so an example counts
    as robust exactly when no adversarial example within eps was found.
    ``threat.step_size`` is unused.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`LinfThreat`; only eps is used.
        binary_search_steps: rounds of the search over c (5).
        max_iterations: Adam steps per run at most (1000; tests use a few).
        learning_rate: Adam step size in the search space (0.005).
        initial_const: first c (0.01). tau_decrease: factor on tau (0.9).
        initial_tau, min_tau: tau starts at 1 and a c-round ends below 1/256.
        abort_early: end a run when the loss fell by < 1e-4 since the check a
            tenth of ``max_iterations`` earlier (reference behaviour).
        confidence: margin kappa the attack asks for (0).
        stop_within_eps: drop an example as soon as a fooling image within eps
            is found. It cannot change which examples are robust (examples are
            searched independently), only the returned image (less minimal)
            and the time; False gives the full minimum-distance search.
        box: "project" (default: pixel-space Adam, steps projected into
            [0, 1]) or "tanh" (the reference's change of variables).

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.
    :meth:`minimal_adversarial` returns the closest images and their (B,) distances.

    Example:
        >>> attack = CWInf(model, LinfThreat(eps=0.031, step_size=0.0))
        >>> x_adv = attack(x, y)  # robust where model(x_adv).argmax(1) == y
    """

    name = "cw-inf"
    identity = ("binary_search_steps", "max_iterations", "learning_rate", "initial_const", "tau_decrease", "initial_tau",
                "min_tau", "abort_early", "confidence", "stop_within_eps", "box")
    default_per_class = 200

    def __init__(
        self,
        model: nn.Module,
        threat: LinfThreat,
        binary_search_steps: int = 5,
        max_iterations: int = 1000,
        learning_rate: float = 0.005,
        initial_const: float = 0.01,
        tau_decrease: float = 0.9,
        initial_tau: float = 1.0,
        min_tau: float = 1 / 256,
        abort_early: bool = True,
        confidence: float = 0.0,
        stop_within_eps: bool = True,
        box: str = "project",
    ) -> None:
        super().__init__(model, threat)
        _check_settings(binary_search_steps, max_iterations, learning_rate, initial_const, tau_decrease)
        self.binary_search_steps, self.max_iterations = binary_search_steps, max_iterations
        self.learning_rate, self.initial_const, self.tau_decrease = learning_rate, initial_const, tau_decrease
        self.initial_tau, self.min_tau, self.abort_early = initial_tau, min_tau, abort_early
        self.confidence, self.stop_within_eps = confidence, stop_within_eps
        if box not in BOXES:
            raise ValueError(f"box must be one of {', '.join(BOXES)}, got {box!r}")
        self.box = box

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        if self.threat.eps == 0 and self.stop_within_eps:
            return x.clone()  # only an already misclassified x itself is within 0
        best, dist = self._minimise(x, y)
        within = rows(dist <= self.threat.eps, x)
        return torch.where(within, self.threat.project(best, x), x)

    def minimal_adversarial(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Closest fooling images (B, C, H, W) and their L-inf distances (B,).

        Distance 0 (and x itself) where x is already misclassified, inf (and
        x) where nothing was found. With ``stop_within_eps`` the search of an
        example stops at the first image within eps.
        """
        with eval_mode(self.model):
            return self._minimise(x.detach(), y)

    def _minimise(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            wrong = self.model(x).argmax(dim=1) != y  # (B,)
        dist = torch.where(wrong, 0.0, math.inf).to(x.dtype)
        best, state = x.clone(), self._start(x, y, ~wrong)
        while len(state.index):  # one Adam step of every live example per pass
            state, best, dist = self._iterate(state, best, dist)
        return best, dist

    def _start(self, x: torch.Tensor, y: torch.Tensor, todo: torch.Tensor) -> _Search:
        index = todo.nonzero().squeeze(1)
        x = x[index]
        zeros, count = torch.zeros_like(x), torch.zeros(len(index), dtype=torch.long, device=x.device)

        def full(value: float) -> torch.Tensor:
            return torch.full((len(index),), value, dtype=x.dtype, device=x.device)

        return _Search(
            index=index, x=x, y=y[index], warm=self._to_space(x), delta=zeros, m=zeros, v=zeros,
            it=count, prev=full(math.inf), found=count.bool(), tau=full(self.initial_tau),
            start_tau=full(self.initial_tau), const=full(self.initial_const), lower=full(0.0),
            upper=full(math.inf), bs=count,
        )

    def _iterate(
        self, s: _Search, best: torch.Tensor, dist: torch.Tensor
    ) -> tuple[_Search, torch.Tensor, torch.Tensor]:
        """One Adam step for every live example, then the tau / c bookkeeping."""
        adv, loss, grad, fooled = self._loss_and_grad(s)
        d = linf_distance(adv, s.x)  # (n,)
        closer = fooled & (d < dist[s.index])
        best[s.index[closer]], dist[s.index[closer]] = adv[closer], d[closer]
        s = self._adam_step(dataclasses.replace(s, found=s.found | fooled), grad)
        s = self._end_runs(s, loss)
        done = s.bs >= self.binary_search_steps
        if self.stop_within_eps:
            done |= dist[s.index] <= self.threat.eps
        return (s.keep(~done) if bool(done.any()) else s), best, dist

    def _loss_and_grad(self, s: _Search) -> tuple[torch.Tensor, ...]:
        """Iterates (n, C, H, W), per-example loss (n,), its gradient in the search space, fooled (n,)."""
        with torch.enable_grad():
            delta = s.delta.detach().requires_grad_(True)
            adv = self._image(s.warm, delta)
            logits = self.model(adv)
            margin = F.relu(self.confidence - cw_margins(logits, s.y))  # (n,)
            excess = F.relu((adv - s.x).abs() - rows(s.tau, adv)).flatten(1).sum(dim=1)  # (n,)
            loss = s.const * margin + excess
            (grad,) = torch.autograd.grad(loss.sum(), delta)
        return adv.detach(), loss.detach(), grad, logits.detach().argmax(dim=1) != s.y

    def _adam_step(self, s: _Search, grad: torch.Tensor) -> _Search:
        """Adam with per-example step counts (runs restart at different times)."""
        (b1, b2), it = _BETAS, s.it + 1
        m = b1 * s.m + (1 - b1) * grad
        v = b2 * s.v + (1 - b2) * grad * grad
        m_hat = m / rows(1 - b1 ** it.to(m.dtype), m)
        v_hat = v / rows(1 - b2 ** it.to(v.dtype), v)
        delta = s.delta - self.learning_rate * m_hat / (v_hat.sqrt() + _ADAM_EPS)
        if self.box == "project":  # clip-and-project: back into [0, 1]
            delta = (s.warm + delta).clamp(0.0, 1.0) - s.warm
        return dataclasses.replace(s, m=m, v=v, delta=delta, it=it)

    def _end_runs(self, s: _Search, loss: torch.Tensor) -> _Search:
        """Close the Adam runs that stalled or used their iterations; move tau and c."""
        every = math.ceil(self.max_iterations / 10)
        check = ((s.it - 1) % every == 0) & self.abort_early
        stalled = check & ~(s.prev - loss > _MIN_PROGRESS)
        s = dataclasses.replace(s, prev=torch.where(check, loss, s.prev))
        ended = stalled | (s.it >= self.max_iterations)
        if not bool(ended.any()):
            return s
        return self._next_round(s, ended)

    def _next_round(self, s: _Search, ended: torch.Tensor) -> _Search:
        """Ended runs that fooled shrink tau and warm-start; the others end their c-round."""
        last = self._image(s.warm, s.delta)
        shrunk = torch.minimum(s.tau, linf_distance(last, s.x)) * self.tau_decrease
        success, grown = ended & s.found, ended & ~s.found
        round_end = grown | (success & (shrunk <= self.min_tau))
        round_success = s.found | (s.tau < s.start_tau)  # a failure after progress still counts
        zero = torch.zeros_like(s.delta)
        s = dataclasses.replace(
            s, tau=torch.where(success, shrunk, s.tau), start_tau=torch.where(grown, s.tau, s.start_tau),
            warm=torch.where(rows(success, last), self._to_space(last), s.warm),
            delta=torch.where(rows(ended, zero), zero, s.delta), m=torch.where(rows(ended, zero), zero, s.m),
            v=torch.where(rows(ended, zero), zero, s.v), it=torch.where(ended, 0, s.it),
            prev=torch.where(ended, math.inf, s.prev), found=s.found & ~ended,
        )
        return self._next_const(s, round_end, round_success)

    def _next_const(self, s: _Search, end: torch.Tensor, success: torch.Tensor) -> _Search:
        """Finish the c-rounds of ``end``: bisect c (x10 while nothing was found), restart tau."""
        upper = torch.where(end & success, s.const, s.upper)
        lower = torch.where(end & ~success, s.const, s.lower)
        const = torch.where(upper.isinf(), s.const * 10, (lower + upper) / 2)
        return dataclasses.replace(
            s, upper=upper, lower=lower, const=torch.where(end, const, s.const),
            warm=torch.where(rows(end, s.x), self._to_space(s.x), s.warm),
            tau=torch.where(end, s.start_tau, s.tau), bs=s.bs + end.long(),
        )

    def _to_space(self, x: torch.Tensor) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] to the search space (identity, or tanh space)."""
        return to_tanh_space(x) if self.box == "tanh" else x

    def _image(self, warm: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The image of search-space point ``warm + delta`` (inside [0, 1])."""
        return from_tanh_space(warm + delta) if self.box == "tanh" else warm + delta

    def __repr__(self) -> str:
        return (
            f"CWInf(eps={self.threat.eps}, binary_search_steps={self.binary_search_steps}, "
            f"max_iterations={self.max_iterations}, learning_rate={self.learning_rate}, "
            f"initial_const={self.initial_const}, tau_decrease={self.tau_decrease}, box={self.box!r})"
        )


def _check_settings(steps: int, iterations: int, lr: float, const: float, decrease: float) -> None:
    if steps < 1:
        raise ValueError(f"binary_search_steps must be >= 1, got {steps}")
    if iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {iterations}")
    if lr <= 0 or const <= 0:
        raise ValueError(f"learning_rate and initial_const must be > 0, got {lr} and {const}")
    if not 0 < decrease < 1:
        raise ValueError(f"tau_decrease must be in (0, 1), got {decrease}")
