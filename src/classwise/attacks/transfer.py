"""Transfer attack: PGD crafted on a surrogate model, evaluated on the target."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import ClasswiseError
from .base import Attack, rows
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
            :func:`load_surrogate` for a checkpoint or run folder of ours). It
            is moved to the images' device; its train/eval mode is restored.
        steps: PGD steps on the surrogate (20). random_start: as :class:`PGD`.
        keep_clean: see above (True).

    Shapes: x (B, C, H, W) float in [0, 1], y (B,) int64 -> (B, C, H, W), same dtype.

    Example:
        >>> attack = Transfer(target, LinfThreat(0.031, 0.003), surrogate=load_surrogate("runs/std"))
        >>> x_adv = attack(x, y, generator=torch.Generator().manual_seed(0))
    """

    name = "transfer"

    def __init__(
        self,
        model: nn.Module,
        threat: Threat,
        surrogate: nn.Module,
        steps: int = 20,
        random_start: bool = True,
        keep_clean: bool = True,
    ) -> None:
        super().__init__(model, threat)
        if not isinstance(surrogate, nn.Module):
            raise ValueError(f"surrogate must be an nn.Module, got {type(surrogate).__name__}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.surrogate, self.steps = surrogate, steps
        self.random_start, self.keep_clean = random_start, keep_clean

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        x_adv = self.perturb_clean_correct(x, y, generator)
        if not self.keep_clean:
            return x_adv
        with torch.no_grad():
            wrong = self.model(x).argmax(dim=1) != y
        return torch.where(rows(wrong, x), x, x_adv)

    def perturb_clean_correct(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """PGD on the surrogate, without checking the clean images on the model."""
        pgd = PGD(self.surrogate.to(x.device), self.threat, self.steps, random_start=self.random_start,
                  keep_best=False)
        return pgd(x, y, generator)

    def __repr__(self) -> str:
        return (
            f"Transfer(norm={self.threat.norm!r}, eps={self.threat.eps}, step_size={self.threat.step_size}, steps={self.steps}, "
            f"surrogate={type(self.surrogate).__name__})"
        )


def load_surrogate(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A model of ours from a checkpoint file or a run folder, in eval mode.

    ``path`` is a ``.safetensors`` checkpoint written by training (its JSON
    metadata names the model, classes, channels, image size, mean, std and
    model options), or a run folder: then the checkpoint named by its
    ``config.yaml`` (``eval.checkpoint``, default "last") under ``checkpoints/``.
    Raises :class:`ClasswiseError` with one line when it cannot.
    """
    from ..models import create_model
    from ..train.checkpoint import load_model, safe_load

    file = _checkpoint_file(Path(path))
    meta = json.loads(safe_load(file)[1].get("classwise", "{}"))
    missing = [k for k in ("model", "num_classes", "in_channels", "image_size") if k not in meta]
    if missing:
        raise ClasswiseError(f"{file} lacks model metadata ({', '.join(missing)}); pass the surrogate as an nn.Module")
    model = create_model(meta["model"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                         image_size=meta["image_size"], mean=meta.get("mean", (0.0,)),
                         std=meta.get("std", (1.0,)), **meta.get("kwargs", {}))
    load_model(model, file)
    return model.to(device).eval()


def _checkpoint_file(path: Path) -> Path:
    """The checkpoint file of ``path``: itself, or the one a run folder evaluates."""
    if not path.is_dir():
        if not path.is_file():
            raise ClasswiseError(f"surrogate {path} does not exist (give a checkpoint file or a run folder)")
        return path
    name = "last"
    if (path / "config.yaml").is_file():
        from ..config import load_config

        name = load_config(path / "config.yaml").eval.checkpoint
    file = path / "checkpoints" / f"{name}.safetensors"
    if not file.is_file():
        raise ClasswiseError(f"run folder {path} has no checkpoint {file.name} for the surrogate")
    return file
