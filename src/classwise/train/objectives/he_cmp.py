"""HE-CMP: HE with s = 1/T solved each epoch to Control the Maximum Probability."""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch
from torch import nn

from ...attacks import eval_mode
from ...config import TrainConfig
from ...data import as_float, class_balanced_indices
from ...models import unwrap
from ..schedules import cmp_target
from .he import HE, he_head

PROBE_SEED = 0  # the probe images are the same every epoch and run
PROBE_CHUNK = 256


def mean_max_prob(cos: np.ndarray, scale: float) -> float:
    """Mean over rows of ``max_k softmax(scale * cos)_k``; cos (N, K) -> float.

    Equation 3 of appendix G: ``max_k p_k = 1 / sum_k exp(s (cos_k - max cos))``,
    increasing in s from 1/K (s = 0) towards 1 (s -> infinity).
    """
    shifted = scale * (cos - cos.max(axis=1, keepdims=True))
    return float(np.mean(1.0 / np.exp(shifted).sum(axis=1)))


def solve_scale(cos: np.ndarray, target: float, x0: float, lo: float, hi: float) -> float:
    """s in [lo, hi] with ``mean_max_prob(cos, s) == target``, by Powell's dogleg (hybr).

    Solved for u = log s, so s stays positive; ``x0`` is the starting s (the
    previous epoch's). Targets outside [p(lo), p(hi)] give the nearer bound. If
    hybr does not converge to 1e-6, bisection (brentq) on the bracket decides.
    cos: (N, K) cosines in [-1, 1] (float64).
    """
    if target <= mean_max_prob(cos, lo):
        return lo
    if target >= mean_max_prob(cos, hi):
        return hi

    def gap(u: np.ndarray) -> np.ndarray:
        return np.array([mean_max_prob(cos, float(np.exp(u[0]))) - target])

    sol = scipy.optimize.root(gap, x0=[np.log(np.clip(x0, lo, hi))], method="hybr")
    scale = float(np.exp(sol.x[0]))
    if sol.success and lo <= scale <= hi and abs(gap(sol.x)[0]) < 1e-6:
        return scale
    return float(np.exp(scipy.optimize.brentq(lambda u: gap(np.array([u]))[0], np.log(lo), np.log(hi))))


@torch.no_grad()
def probe_cosines(model: nn.Module, x: torch.Tensor, y: torch.Tensor, examples: int) -> np.ndarray:
    """cos(theta) (N, K) of a fixed class-balanced set of about ``examples`` clean images.

    x (N_train, C, H, W) uint8 or float, y (N_train,); the model runs in eval mode.
    """
    counts = torch.bincount(y.cpu())
    per_class = max(1, min(examples // len(counts), int(counts[counts > 0].min())))
    idx = class_balanced_indices(y.cpu(), per_class, seed=PROBE_SEED).to(x.device)
    head, net, rows = he_head(model), unwrap(model), []
    features = getattr(net, "features", None)
    if not callable(features):
        raise ValueError(f"the HE probe needs the model's features(x), {type(net).__name__} has none")
    with eval_mode(net):
        for chunk in idx.split(PROBE_CHUNK):
            rows.append(head.cosine(features(as_float(x[chunk]))))
    return torch.cat(rows).double().cpu().numpy()


class HECMP(HE):
    """HE whose scale s makes the mean maximum probability follow a target schedule.

    Paper: appendix G of "Intriguing class-wise properties of adversarial
    training" (equation 6): target P_n = P_0 + n / n_FI * (P_F - P_0) for
    0-based epoch n < n_FI, then P_F; P_0 = 0.2, P_F = 1, n_FI = 90 of 100
    (``cfg.he``: pmax_start, pmax_end, pmax_ramp). No angular margin.

    Our choices (docs/training.md): the maximum probability is the mean, over a
    fixed class-balanced set of ``cfg.he.probe_examples`` clean training
    images, of max_k softmax(s * cos)_k, measured with the model at the start
    of the epoch (eval mode); probability 1 is unreachable for finite s, so
    targets are clipped to ``cfg.he.pmax_clip`` (0.999) and s to
    [``scale_min``, ``scale_max``]. s is solved with Powell's dogleg method
    (:func:`solve_scale`), kept in the head's buffer and the training state.

    Shapes: as :class:`HE`.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.target: float | None = None
        self.achieved: float | None = None

    def begin_epoch(self, epoch: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        t, head = self.cfg.he, he_head(model)
        target = min(cmp_target(epoch, self.cfg.epochs, t.pmax_start, t.pmax_end, t.pmax_ramp), t.pmax_clip)
        cos = probe_cosines(model, x, y, t.probe_examples)
        start = self.scale if self.scale is not None else float(head.scale)
        scale = solve_scale(cos, target, start, t.scale_min, t.scale_max)
        head.set_scale(scale)
        self.target, self.achieved = target, mean_max_prob(cos, scale)
        super().begin_epoch(epoch, model, x, y)

    def epoch_metrics(self) -> dict:
        return super().epoch_metrics() | {"pmax_target": self.target, "pmax_probe": self.achieved}

    def state_dict(self) -> dict:
        return super().state_dict() | {"pmax_target": self.target, "pmax_probe": self.achieved}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target, self.achieved = state.get("pmax_target"), state.get("pmax_probe")
