"""Evaluation: clean and adversarial predictions per sample, for any model.

Works on any ``nn.Module`` that maps [0, 1] images (B, C, H, W) to logits
(B, K): a user's own model as well as ours. Each attack runs only on the
examples the model classifies correctly when clean (as AutoAttack does), so an
example counts as robust only if it is clean-correct and survives the attack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .attacks import Attack, create_attack
from .config import AttackConfig
from .data.bundle import as_float
from .progress import progress_task
from .results import EvalResults


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto"/None -> CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_attacks(model: nn.Module, specs: Sequence[str] | Mapping[str, Attack], eps: float | None) -> dict[str, Attack]:
    """Attack objects by name: pass-through for a mapping, registry specs otherwise."""
    if isinstance(specs, Mapping):
        return dict(specs)
    if eps is None:
        raise ValueError("eps is required when attacks are given by name")
    return {spec: create_attack(spec, model, eps) for spec in specs}


def build_attack(cfg: AttackConfig, model: nn.Module) -> Attack:
    """An attack from its config; ``restarts`` is passed only where it applies."""
    extra = {"restarts": cfg.restarts} if cfg.restarts > 1 else {}
    return create_attack(cfg.name, model, cfg.eps, step_size=cfg.step_size, **extra)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on x (B, C, H, W) in [0, 1], in eval mode (mode restored)."""
    from .attacks import eval_mode

    with eval_mode(model):
        return model(x)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[str] | Mapping[str, Attack] = ("pgd20",),
    *,
    eps: float | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    keep_probs: bool = False,
    progress: bool = True,
) -> EvalResults:
    """Per-sample clean and adversarial predictions of ``model``.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to (B, K) logits.
        images: (N, C, H, W) uint8 or float in [0, 1]; labels: (N,) int.
        attacks: registry specs ("fgsm", "pgd20", ...) with ``eps``, or a
            mapping name -> :class:`Attack` already built on ``model``.
        class_names: K names (default "0".."K-1").
        seed: each attack draws its randomness from its own generator seeded
            with ``seed``, so results are reproducible.
        keep_probs: also keep softmax probabilities (N, K) per attack.

    Returns:
        :class:`EvalResults` with labels, clean_pred and adv_pred per attack.
    """
    dev = resolve_device(device)
    model = model.to(dev)
    built = make_attacks(model, attacks, eps)
    gens = {name: torch.Generator(dev).manual_seed(seed) for name in built}
    outs: dict[str, list[torch.Tensor]] = {"clean": [], **{n: [] for n in built}}
    n = len(labels)
    with progress_task(f"evaluating {', '.join(built)}", n, progress) as advance:
        for start in range(0, n, batch_size):
            x = as_float(images[start : start + batch_size].to(dev))
            y = labels[start : start + batch_size].to(dev)
            for name, logits in _attack_batch(model, x, y, built, gens).items():
                outs[name].append(logits.float().cpu())
            advance(len(y))
    return _to_results(outs, labels, class_names, keep_probs)


def _attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                  gens: Mapping[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Clean logits and, per attack, logits on adversarial images (B, K).

    Only clean-correct examples are attacked; the others keep their clean logits.
    """
    clean = predict(model, x)
    ok = clean.argmax(1) == y
    out = {"clean": clean}
    for name, attack in attacks.items():
        logits = clean.clone()
        if ok.any():
            x_adv = attack(x[ok], y[ok], gens[name])
            logits[ok] = predict(model, x_adv).to(logits.dtype)
        out[name] = logits
    return out


def _to_results(outs: dict[str, list[torch.Tensor]], labels: torch.Tensor,
                class_names: Sequence[str] | None, keep_probs: bool) -> EvalResults:
    logits = {k: torch.cat(v) for k, v in outs.items()}
    clean = logits.pop("clean")
    names = list(class_names) if class_names is not None else [str(i) for i in range(clean.shape[1])]
    probs = (lambda t: t.softmax(1).numpy().astype(np.float32)) if keep_probs else None
    return EvalResults(
        labels=labels.cpu().numpy().astype(np.int64),
        clean_pred=clean.argmax(1).numpy().astype(np.int64),
        adv_pred={k: v.argmax(1).numpy().astype(np.int64) for k, v in logits.items()},
        class_names=names,
        clean_probs=probs(clean) if probs else None,
        adv_probs={k: probs(v) for k, v in logits.items()} if probs else {},
    )
