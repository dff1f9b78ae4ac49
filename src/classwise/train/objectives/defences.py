"""Class-wise defences from the paper's guidelines, usable with every objective.

Section 4 of "Intriguing class-wise properties of adversarial training" links
weak classes to small classifier weight norms and suggests treating classes
unequally during training. Two switches of :class:`classwise.config.TrainConfig`
turn that into training terms (formulas also in docs/training.md):

- ``weight_norm_penalty`` lambda: ``lambda * Var_c(|w_c|_2)``, the (population)
  variance of the L2 norms of the K rows of ``head.weight``
  (:func:`norm_spread_penalty`).
- ``class_weight_gamma`` gamma: each example's loss is multiplied by
  ``w_y = K * e_y / sum_c e_c`` with ``e_c = max(1 - r_c, floor)^gamma``, where
  r_c in [0, 1] is class c's accuracy on the logits the objective trained on
  (adversarial for attack-based objectives) over the previous epoch
  (:func:`class_weights`, :class:`ClassTally`). The training set, not the test
  monitor, supplies r_c, so no test data leaks into training.
"""

from __future__ import annotations

import torch

WEIGHT_FLOOR = 0.01  # a fully robust class keeps a small weight


def norm_spread_penalty(weight: torch.Tensor) -> torch.Tensor:
    """``Var_c(|w_c|_2)`` of the rows of ``weight`` (K, D); a scalar, differentiable."""
    return weight.norm(dim=1).var(unbiased=False)


def class_weights(correct: torch.Tensor, total: torch.Tensor, gamma: float, floor: float = WEIGHT_FLOOR) -> torch.Tensor:
    """Per-class loss weights (K,) with mean 1: ``K * e_c / sum(e)``, ``e_c = max(1 - r_c, floor)^gamma``.

    correct, total: (K,) counts of the previous epoch, ``r_c = correct / total``;
    a class with no examples gets r_c = 0 (treated as weakest).
    """
    acc = correct.double() / total.double().clamp(min=1)
    e = (1.0 - acc).clamp(min=floor) ** gamma
    return (e * (len(e) / e.sum())).float()


def weighted_mean(losses: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``mean_i w_{y_i} * l_i`` (plain mean when ``weights`` is None); losses, y: (B,)."""
    return losses.mean() if weights is None else (weights[y] * losses).mean()


class ClassTally:
    """Per-class counts of correct predictions over one epoch, kept on the device."""

    def __init__(self) -> None:
        self.correct: torch.Tensor | None = None  # (K,) float
        self.total: torch.Tensor | None = None  # (K,) float

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count one batch: logits (B, K), y (B,); no host sync."""
        if self.correct is None or self.total is None:
            k = logits.shape[1]
            self.correct = torch.zeros(k, device=logits.device)
            self.total = torch.zeros(k, device=logits.device)
        hit = (logits.detach().argmax(1) == y).float()
        self.correct.index_add_(0, y, hit)
        self.total.index_add_(0, y, torch.ones_like(hit))

    def reset(self) -> None:
        self.correct = self.total = None

    def state_dict(self) -> dict:
        return {} if self.correct is None else {"correct": self.correct, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.correct, self.total = state.get("correct"), state.get("total")
