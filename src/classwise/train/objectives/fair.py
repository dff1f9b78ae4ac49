"""What the robust-fairness objectives (frl, dafa, wat, cfa) share: a validation split, class-wise
measurements on it, and a TRADES attack with a radius per example.

Each of these methods is TRADES whose loss terms (and, for FRL and DAFA, attack
radius) are weighted per class, the weights being updated at epoch boundaries from
class-wise numbers measured on a validation split held out of the training set
(:class:`FairObjective`; the training loop removes the split from training and
records it in ``<run>/validation.json``). Measurements run in eval mode on a fixed
generator, so every process of a DDP run computes the same weights and a resumed
run recomputes them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks import Threat, eval_mode, grad_and_logits
from ...data import as_float
from ...models import unwrap
from .base import Objective, training_attack
from .trades import START_STD, kl_attack, kl_rows

VAL_SEED = 0  # the validation attack's noise: the same every epoch, run and process
VAL_CHUNK = 256


@dataclass(frozen=True)
class ClassStats:
    """Class-wise numbers of a model on a validation split (K classes).

    count, clean_correct, adv_correct, loss_sum: (K,); probs_sum: (K, K), row c the
    sum of the adversarial softmax over class c's examples. ``loss_sum`` sums the
    per-example TRADES loss ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.
    """

    count: torch.Tensor
    clean_correct: torch.Tensor
    adv_correct: torch.Tensor
    probs_sum: torch.Tensor
    loss_sum: torch.Tensor

    @property
    def clean_error(self) -> torch.Tensor:
        """(K,) clean error rate per class."""
        return 1 - self.clean_correct / self.count.clamp(min=1)

    @property
    def boundary_error(self) -> torch.Tensor:
        """(K,) boundary error per class: clean accuracy minus adversarial accuracy (FRL)."""
        return (self.clean_correct - self.adv_correct) / self.count.clamp(min=1)

    @property
    def similarity(self) -> torch.Tensor:
        """(K, K) mean adversarial softmax of each class's examples (DAFA's p_ij)."""
        return self.probs_sum / self.count.clamp(min=1)[:, None]

    @property
    def mean_loss(self) -> torch.Tensor:
        """(K,) mean TRADES loss per class (WAT's class cost)."""
        return self.loss_sum / self.count.clamp(min=1)


def scaled_kl_attack(model: nn.Module, x: torch.Tensor, threat: Threat, steps: int, generator: torch.Generator,
                     eps_scale: torch.Tensor | None, step_scale: torch.Tensor | None = None) -> torch.Tensor:
    """TRADES's KL attack (:func:`kl_attack`) with radius ``eps * eps_scale[i]`` for example i (L-inf).

    x (B, C, H, W) in [0, 1]; eps_scale, step_scale (B,) or None (None: plain
    :func:`kl_attack`, bit for bit). Steps ``step_size * step_scale[i] * sign(grad)``,
    then projection onto the scaled ball and [0, 1], as the FRL and DAFA references.
    """
    if eps_scale is None:
        return kl_attack(model, x, threat, steps, generator)
    if threat.norm != "linf":
        raise ValueError(f"class-wise attack radii are defined for L-inf only, got {threat.norm}")
    radius = (threat.eps * eps_scale).view(-1, *[1] * (x.dim() - 1))  # (B, 1, 1, 1)
    step = threat.step_size if step_scale is None else (threat.step_size * step_scale).view_as(radius)
    with eval_mode(model):
        with torch.no_grad():
            clean_probs = F.softmax(model(x), 1)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = x + START_STD * noise
        for _ in range(steps):
            grad, _ = grad_and_logits(model, x_adv, clean_probs, _kl_sum)
            x_adv = torch.min(torch.max(x_adv + step * grad.sign(), x - radius), x + radius).clamp(0.0, 1.0)
    return x_adv.detach()


def _kl_sum(logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, 1), clean_probs, reduction="sum")


class FairObjective(Objective):
    """TRADES with class-wise weights updated at epoch boundaries from a validation split.

    ``validation`` (x (M, C, H, W) uint8, y (M,)) is set by the training loop, which
    holds the split out of the training set (``cfg.fair.val_examples`` images).
    Subclasses implement :meth:`update` (new weights from the validation split) and
    :meth:`losses`; their weights go into :meth:`state_dict` for an exact resume.
    """

    def validation_size(self) -> int:
        return self.cfg.fair.val_examples

    def begin_epoch(self, epoch: int, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        super().begin_epoch(epoch, model, x, y)
        if self.validation is None:
            raise ValueError(f"train.method {self.cfg.method} needs a validation split (set by the training loop)")
        self.update(epoch, unwrap(model))

    def update(self, epoch: int, model: nn.Module) -> None:
        """Update the class weights before 0-based ``epoch``; model is unwrapped."""

    def measure(self, model: nn.Module, kl: bool) -> ClassStats:
        """:class:`ClassStats` of ``model`` on the validation split under the training attack's threat.

        kl: the TRADES KL attack (x + 0.001 N(0, I) start), else ``cfg.attack`` (CE,
        its own start). Eval mode, chunks of 256, generator seeded with ``VAL_SEED``.
        """
        assert self.validation is not None
        xs, ys = self.validation
        k = self.num_classes(model, xs)
        spec = training_attack(self.cfg.attack, model, self.cfg.attack.eps)
        gen = torch.Generator(xs.device).manual_seed(VAL_SEED)
        sums = [torch.zeros(k, device=xs.device) for _ in range(4)] + [torch.zeros(k, k, device=xs.device)]
        for idx in torch.arange(len(ys), device=xs.device).split(VAL_CHUNK):
            x, y = as_float(xs[idx]), ys[idx]
            x_adv = kl_attack(model, x, spec.threat, getattr(spec, "steps", 1), gen) if kl else spec(x, y, gen)
            with eval_mode(model), torch.no_grad():
                clean, adv = model(x), model(x_adv)
            loss = F.cross_entropy(clean, y, reduction="none") + self.cfg.beta * kl_rows(clean, adv)
            for total, per in zip(sums, (torch.ones_like(loss), (clean.argmax(1) == y).float(),
                                         (adv.argmax(1) == y).float(), loss)):
                total.index_add_(0, y, per)
            sums[4].index_add_(0, y, F.softmax(adv, 1))
        return ClassStats(count=sums[0], clean_correct=sums[1], adv_correct=sums[2], loss_sum=sums[3],
                          probs_sum=sums[4])

    @staticmethod
    def num_classes(model: nn.Module, x: torch.Tensor) -> int:
        with eval_mode(model), torch.no_grad():
            return int(model(as_float(x[:1])).shape[1])
