"""N-Attack: a query-based black-box attack that learns a Gaussian over perturbations."""

from __future__ import annotations

import torch
from torch import nn

from .base import Attack
from .cw_inf import from_tanh_space, to_tanh_space
from .losses import cw_margins
from .threat import LinfThreat


class NAttack(Attack):
    r"""N-Attack (NES over the mean of a Gaussian in tanh space), L-inf, untargeted.

    Per example it keeps a mean ``mu`` (init ``init_std * N(0, I)``). Each
    iteration samples ``population`` images ``g(w(x) + mu + sigma * n_i)``,
    projects them onto the eps-ball and [0, 1] (the shared
    :class:`LinfThreat`), queries the model, scores each by
    ``-0.5 * clip(log p_y - max_{j != y} log p_j, 0, 1000)``, standardises the
    scores and moves ``mu`` by ``lr / (population * sigma) * sum_i score_i n_i``.
    An example stops at its first success: the projected image of ``mu``
    itself fools the model. Only model outputs are used (no gradients); every
    forward pass runs under ``torch.no_grad()``.

    Paper: Li et al., "NATTACK: Learning the Distributions of Adversarial
    Examples for an Improved Black-Box Attack on Deep Neural Networks", ICML
    2019; settings of appendix E of "Intriguing class-wise properties of
    adversarial training" (population 300, sigma 0.1, lr 0.02, 200 test
    images a class). Differences to the public code: the success test runs
    every iteration (the code: every 10th; one more query per iteration, and
    only earlier stops), and a final test follows the last update.

    Threat model: L-inf ball of radius ``threat.eps`` intersected with [0, 1]
    (``threat.step_size`` unused). Returns the successful image, else the
    clean one, so robust = no success within the budget. Queries per example
    at most ``2 + max_iterations * (population + 1)``. Note: tanh space
    freezes pixels at exactly 0 or 1 (``atanh(+-0.999999)`` is about +-7.25,
    where sigma 0.1 barely moves them), as in the reference; on binary-like
    images such as MNIST the attack is therefore weak.

    Arguments:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: :class:`LinfThreat`; only eps is used.
        population: samples per iteration (300). sigma: their std in tanh space (0.1).
        learning_rate: NES step on ``mu`` (0.02).
        max_iterations: query budget in iterations (500, as the public code).
        init_std: std of the initial mean (0.001, as the public code).
        batch_queries: images per forward pass; examples run in groups of
            ``max(1, batch_queries // population)`` (memory vs. speed).

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.
    All noise comes from ``generator`` (same seed and batch, same result).

    Example:
        >>> attack = NAttack(model, LinfThreat(eps=0.031, step_size=0.0))
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "nattack"
    identity = ("population", "sigma", "learning_rate", "max_iterations", "init_std", "batch_queries")
    norms = ("linf",)  # its search space is the L-inf box around x
    default_per_class = 200
    black_box = True

    def __init__(
        self,
        model: nn.Module,
        threat: LinfThreat,
        population: int = 300,
        sigma: float = 0.1,
        learning_rate: float = 0.02,
        max_iterations: int = 500,
        init_std: float = 0.001,
        batch_queries: int = 3000,
    ) -> None:
        super().__init__(model, threat)
        if population < 2 or max_iterations < 0 or batch_queries < 1:
            raise ValueError("population must be >= 2, max_iterations >= 0 and batch_queries >= 1")
        if sigma <= 0 or learning_rate <= 0:
            raise ValueError(f"sigma and learning_rate must be > 0, got {sigma} and {learning_rate}")
        self.population, self.sigma, self.learning_rate = population, sigma, learning_rate
        self.max_iterations, self.init_std, self.batch_queries = max_iterations, init_std, batch_queries

    @torch.no_grad()
    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        out = x.clone()
        todo = (self.model(x).argmax(dim=1) == y).nonzero().squeeze(1)  # clean-correct only
        group = max(1, self.batch_queries // self.population)
        for idx in todo.split(group):
            out[idx] = self._search(x[idx], y[idx], generator)
        return out

    def _search(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Images (n, C, H, W): the first fooling image of ``mu`` per example, else x."""
        out, live, w = x.clone(), torch.arange(len(x), device=x.device), to_tanh_space(x)
        mu = self.init_std * self._noise(x.shape, x, generator)
        for it in range(self.max_iterations + 1):
            center = self.threat.project(from_tanh_space(w[live] + mu), x[live])  # (n_live, C, H, W)
            fooled = self.model(center).argmax(dim=1) != y[live]
            out[live[fooled]] = center[fooled]
            live, mu = live[~fooled], mu[~fooled]
            if it == self.max_iterations or len(live) == 0:
                return out
            mu = mu + self._nes_step(x[live], y[live], w[live], mu, generator)
        return out

    def _nes_step(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mu: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The NES update of ``mu`` (n, C, H, W) from one population of queries."""
        n, p = len(x), self.population
        noise = self._noise((n, p, *x.shape[1:]), x, generator)  # (n, P, C, H, W)
        cand = from_tanh_space(w[:, None] + mu[:, None] + self.sigma * noise)
        cand = self.threat.project(cand, x[:, None])
        log_p = self.model(cand.flatten(0, 1)).log_softmax(dim=1)  # (n * P, K)
        margin = -cw_margins(log_p, y.repeat_interleave(p)).view(n, p)  # log p_y - max other
        reward = -0.5 * margin.clamp(0.0, 1000.0)  # (n, P)
        score = (reward - reward.mean(1, keepdim=True)) / (reward.std(1, unbiased=False, keepdim=True) + 1e-7)
        step = torch.einsum("np,np...->n...", score, noise)
        return self.learning_rate / (p * self.sigma) * step

    @staticmethod
    def _noise(shape: tuple[int, ...] | torch.Size, like: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)

    def __repr__(self) -> str:
        return (
            f"NAttack(eps={self.threat.eps}, population={self.population}, sigma={self.sigma}, "
            f"learning_rate={self.learning_rate}, max_iterations={self.max_iterations})"
        )

