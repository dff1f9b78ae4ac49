"""What an attack spends: forward and input-gradient (backward) passes, per example.

A :class:`CostMeter` watches a model while an attack runs: a forward
pre-hook counts the rows of every forward pass, and, when the input requires
a gradient, threads it through an identity autograd function whose backward
counts the rows again (one input-gradient pass). It wraps the model's
forward, not the attack, so it counts our attacks, the official AutoAttack,
torchattacks and a user's callable alike.

Attribution rule (which example a row is charged to):

* the meter starts with the rows of the batch it charges (``rows``, (A,)
  positions among ``size`` examples);
* an attack that works on a subset of its batch (compaction: only the
  examples still robust) says so with :func:`charging` (idx (A',) positions
  in the batch it was given); a forward of exactly that many rows is
  charged to exactly those examples, one pass each;
* a forward whose row count differs from the declared rows (a library
  attack's own sub-batches, a one-image probe) cannot be attributed: its
  rows are spread evenly over the declared examples, ``n // A`` each and
  one more to the first ``n % A``. Totals stay exact; per-example figures
  are then the batch average.

Only passes through the watched model count (a transfer attack's surrogate
passes do not), and not the setup probes an attack object makes once
(:func:`uncharged`), so counts do not depend on how batches are spread
over processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

# The meter of the attack running now (evaluations run one attack at a time per process).
_ACTIVE: ContextVar["CostMeter | None"] = ContextVar("classwise_cost_meter", default=None)


class _CountBackward(torch.autograd.Function):
    """Identity whose backward charges one input-gradient pass to ``charge``'s rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, charge: Any) -> torch.Tensor:
        ctx.charge = charge
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.charge()
        return grad, None


class CostMeter:
    """Per-example forward and backward passes through ``model`` while the meter is entered.

    Args:
        model: the model attacks call (hooked while the meter is entered; hooks removed after).
        rows: (A,) int64 positions, among ``size`` examples, of the batch the attack gets.
        size: number of examples counted (B).

    Attributes ``forwards`` and ``backwards``: (B,) int64 on ``rows``'s device.

    Example:
        >>> with CostMeter(model, torch.arange(8), 8) as meter:
        ...     x_adv = attack(x, y)
        >>> meter.forwards, meter.backwards  # (8,), (8,)
    """

    def __init__(self, model: nn.Module, rows: torch.Tensor, size: int) -> None:
        self.model = model
        self.forwards = torch.zeros(size, dtype=torch.int64, device=rows.device)
        self.backwards = torch.zeros_like(self.forwards)
        self._rows = [rows]
        self._handle: Any = None
        self._token: Any = None

    def __enter__(self) -> CostMeter:
        self._handle = self.model.register_forward_pre_hook(self._on_forward)
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()
        _ACTIVE.reset(self._token)

    def records(self) -> dict[str, torch.Tensor]:
        """{"forwards": (B,), "backwards": (B,)} int64."""
        return {"forwards": self.forwards, "backwards": self.backwards}

    def _charge(self, counts: torch.Tensor, n: int, rows: torch.Tensor) -> None:
        """Charge a pass over ``n`` rows to the examples ``rows`` (A,), by the attribution rule."""
        if n == len(rows) or not len(rows):
            counts.index_add_(0, rows, torch.ones_like(rows))
            return
        share, extra = divmod(n, len(rows))
        counts.index_add_(0, rows, torch.full_like(rows, share))
        counts.index_add_(0, rows[:extra], torch.ones_like(rows[:extra]))

    def _on_forward(self, module: nn.Module, args: tuple) -> tuple | None:
        if not args or not isinstance(args[0], torch.Tensor) or _ACTIVE.get() is not self:
            return None
        x, rows = args[0], self._rows[-1]
        self._charge(self.forwards, len(x), rows)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return None
        charge = lambda: self._charge(self.backwards, len(x), rows)  # noqa: E731
        return (_CountBackward.apply(x, charge), *args[1:])

    @contextmanager
    def _subset(self, idx: torch.Tensor) -> Iterator[None]:
        self._rows.append(self._rows[-1][idx])
        try:
            yield
        finally:
            self._rows.pop()


@contextmanager
def charging(idx: torch.Tensor) -> Iterator[None]:
    """Passes inside run on the rows ``idx`` (A,) of the batch the attack was given.

    A compacting attack wraps the passes on its active rows in it, so each
    example is charged for exactly the passes it was in. No meter: nothing happens.
    """
    meter = _ACTIVE.get()
    if meter is None:
        yield
        return
    with meter._subset(idx):
        yield


@contextmanager
def uncharged() -> Iterator[None]:
    """Passes inside are charged to no example: a setup probe an attack object makes once (e.g. the
    model's class count), whose place would depend on which process ran the first batch."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
