"""Looking inside a model under attack: per-step probabilities and penultimate features.

These functions run a model (unlike :mod:`classwise.analysis`, which only reads
per-sample arrays) and return numpy arrays for the analyses and figures of
section 4 (figure 5b-d, f-h) and appendix D (figure 8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .attacks import PGD, Attack, eval_mode, grad_and_logits
from .data.bundle import as_float
from .models import classifier_layer


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, inv_temperature: float) -> torch.Tensor:
    return (model(x) * inv_temperature).softmax(dim=1)


def probability_trajectory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: PGD,
                           steps: Sequence[int] = (1, 10, 20), generator: torch.Generator | None = None,
                           attack_view: bool = False) -> np.ndarray:
    """Softmax outputs of the PGD iterate after each of ``steps`` attack steps (figure 5b-d, f-h).

    Replays ``attack`` (any :class:`~classwise.attacks.PGD`, Temperature-PGD
    included: its loss, threat model, random start and temperature) one step
    at a time on the shared :class:`~classwise.attacks.LinfThreat`, and
    records the model's probabilities after step t (t = 0: the start, the
    clean image or the random start). It follows the plain PGD iterate
    (no restarts, no best-iterate keeping), as the paper's figure does.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits; run in eval mode.
        x: (B, C, H, W) uint8 or float images; y: (B,) labels.
        steps: step counts to record, each in [0, max(steps)].
        attack_view: softmax of logits / T, as the attack's loss sees them
            (figure 5f-h, "1/T = 10"); default the model's own softmax.

    Returns:
        (S, B, K) float32, S = len(steps), in the order given.
    """
    if any(s < 0 for s in steps):
        raise ValueError(f"steps must be >= 0, got {tuple(steps)}")
    inv_t = 1.0 / attack.temperature if attack_view else 1.0
    dev = next(model.parameters()).device
    x, y = as_float(x.to(dev)), y.to(dev)
    recorded: dict[int, torch.Tensor] = {}
    with eval_mode(model):
        x_adv = attack.threat.random_init(x, generator) if attack.random_start else x.clone()
        for t in range(max(steps, default=0) + 1):
            if t in steps:
                recorded[t] = _probs(model, x_adv, inv_t).float().cpu()
            grad, _ = grad_and_logits(model, x_adv, y, attack.loss_fn)
            x_adv = attack.threat.step(x_adv, grad, x)
    return torch.stack([recorded[s] for s in steps]).numpy()


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The input of the classifier of images x (N, C, H, W) -> (N, D) float32.

    ``model.features`` for classwise models; for a model without it (torchvision,
    timm, RobustBench), the input of its last ``nn.Linear``
    (:func:`classwise.models.classifier_layer`), read by a forward hook.
    """
    own = getattr(model, "features", None)  # a method; torchvision's VGG "features" is a conv stack, not it
    features = own if callable(own) and not isinstance(own, nn.Module) else _linear_input(model)
    dev = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            out.append(features(as_float(x[start : start + batch_size].to(dev))).float().flatten(1).cpu())
    return torch.cat(out).numpy()


def _linear_input(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the input of the model's last ``nn.Linear`` (B, D) on x, captured during ``model(x)``."""
    found = classifier_layer(model)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no features(x) and no nn.Linear classifier; "
                         "t-SNE needs the penultimate layer")
    layer = found[1]

    def features(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return seen[-1]

    return features


def adversarial_images(attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
                       seed: int = 0) -> torch.Tensor:
    """Adversarial versions of all images x (N, C, H, W) -> (N, C, H, W) float in [0, 1].

    Unlike :func:`classwise.evaluate.evaluate` every image is attacked, also
    those misclassified when clean (figure 8 shows all test images).
    ``attack``: any :class:`~classwise.attacks.Attack`.
    """
    dev = next(attack.model.parameters()).device
    gen = torch.Generator(dev).manual_seed(seed)
    out = []
    for start in range(0, len(x), batch_size):
        xb = as_float(x[start : start + batch_size].to(dev))
        out.append(attack(xb, y[start : start + batch_size].to(dev), gen).cpu())
    return torch.cat(out)
