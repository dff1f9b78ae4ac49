"""Transfer attack: PGD crafted on a surrogate model, evaluated on the target."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ClasswiseError
from .base import Attack, eval_mode, rows
from .cost import uncharged
from .pgd import PGD
from .threat import Threat


class Transfer(Attack):
    r"""Black-box transfer: last-iterate PGD on ``surrogate``; the target only judges.

    The adversarial images are the surrogate's: plain PGD (random start,
    ``steps`` steps, last iterate, as Madry et al.) on the surrogate's
    cross-entropy. The target model is used once, on the clean images, and
    only when ``keep_clean`` is True: an example the target already
    misclassifies keeps its clean image, so robust accuracy never exceeds
    clean accuracy (``classwise.evaluate`` attacks only clean-correct examples
    anyway, so this changes no evaluation). No target gradient or adversarial
    query is used.

    Paper: Papernot et al., "Transferability in Machine Learning", 2016;
    appendix E of "Intriguing class-wise properties of adversarial training":
    surrogate = a standard-trained model, PGD settings as the white-box PGD.

    Threat model: the L-inf or L2 ball of radius ``threat.eps`` intersected
    with [0, 1]; ``steps`` steps of ``threat.step_size`` on the surrogate,
    projected by the shared threat object, as :class:`PGD`.

    Arguments:
        model: the target; maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        threat: the threat model (norm, eps, step size).
        surrogate: any ``nn.Module`` on the same inputs and classes (see
            :func:`classwise.runs.load_model_from` for a checkpoint or run folder of ours). It
            is moved to the images' device; its train/eval mode is restored.
        steps: PGD steps on the surrogate (20). random_start: as :class:`PGD`.
        keep_clean: see above (True). trained_on: the surrogate's training
            dataset when known (a run folder or checkpoint of ours records it);
            evaluations refuse a surrogate of another dataset.

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = Transfer(target, LinfThreat(0.031, 0.003), surrogate=load_model_from("runs/std"))
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "transfer"
    identity = ("steps", "random_start", "keep_clean", "trained_on")
    black_box = True

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        surrogate: nn.Module,
        steps: int = 20,
        random_start: bool = True,
        keep_clean: bool = True,
        trained_on: str | None = None,
    ) -> None:
        super().__init__(model, threat)
        if not isinstance(surrogate, nn.Module):
            raise ValueError(f"surrogate must be an nn.Module, got {type(surrogate).__name__}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.surrogate, self.steps = surrogate, steps
        self.random_start, self.keep_clean = random_start, keep_clean
        self.trained_on = trained_on  # the surrogate's dataset, when known (recorded in the facts)

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        if not self.keep_clean:
            return self.perturb_clean_correct(x, y, generator)
        with torch.no_grad():
            clean = self.model(x)
        self._check_fits(x, clean.shape[-1])
        x_adv = self.perturb_clean_correct(x, y, generator)
        return torch.where(rows(clean.argmax(dim=1) != y, x), x, x_adv)

    def _check_fits(self, x: torch.Tensor, num_classes: int | None = None) -> None:
        """Once per attack: the surrogate takes these images and has the model's classes."""
        if not getattr(self, "_fits", False):
            if num_classes is None:
                with torch.no_grad(), uncharged():  # once per attack object: no example's cost
                    num_classes = self.model(x[:1]).shape[-1]
            check_surrogate_fits(self.surrogate, num_classes, x)
            self._fits = True

    def perturb_clean_correct(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """PGD on the surrogate, without checking the clean images on the model."""
        self._check_fits(x)
        pgd = PGD(self.surrogate.to(x.device), self.threat, self.steps, random_start=self.random_start,
                  keep_best=False)
        return pgd(x, y, generator)

    def __repr__(self) -> str:
        return (
            f"Transfer(norm={self.threat.norm!r}, eps={self.threat.eps}, step_size={self.threat.step_size}, steps={self.steps}, "
            f"surrogate={type(self.surrogate).__name__})"
        )


def check_surrogate_fits(surrogate: nn.Module, k_model: int, x: torch.Tensor) -> None:
    """Refuse a surrogate that cannot take the images ``x`` or has not ``k_model`` classes."""
    with torch.no_grad(), eval_mode(surrogate.to(x.device)):
        try:
            k_sur = surrogate(x[:1]).shape[-1]
        except RuntimeError as e:
            raise ClasswiseError(f"the transfer surrogate cannot take the model's images {tuple(x.shape[1:])}: "
                                 f"it was built for another dataset ({str(e).splitlines()[0]})") from None
    if k_sur != k_model:
        raise ClasswiseError(f"the transfer surrogate has {k_sur} classes but the model {k_model}: "
                             "use a surrogate trained on the same dataset")
