"""Evaluation: clean and adversarial predictions per sample, for any model.

Works on any ``nn.Module`` that maps [0, 1] images (B, C, H, W) to logits
(B, K): a user's own model as well as ours. Each attack runs only on the
examples the model classifies correctly when clean (as AutoAttack does), so an
example counts as robust only if it is clean-correct and survives the attack.
:func:`evaluate` judges every attack on its own; :func:`evaluate_worst_case`
cascades them (each attack only on examples still robust) for the worst case.
The (uint8) test images go to the device once, not batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .analysis import WORST
from .attacks import Attack, create_attack, cross_entropy, eval_mode, grad_and_logits
from .config import AttackConfig, PerfConfig
from .data.bundle import as_float
from .perf import autocast, prepare_input, prepare_model
from .progress import progress_tasks
from .results import EvalResults

BatchFn = Callable[..., dict[str, torch.Tensor]]


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
    perf: PerfConfig | None = None,
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
        perf: speed options (channels_last, bf16 autocast, compile; see
            :mod:`classwise.perf`), applied to ``model`` in place.

    Returns:
        :class:`EvalResults` with labels, clean_pred and adv_pred per attack;
        each attack is judged on its own (see :func:`evaluate_worst_case`).
        ``extras["zero_grad"]`` (N,) flags examples whose input gradient is
        all zero, for :func:`classwise.analysis.sanity_report`.
    """
    return _run(_attack_batch, model, images, labels, attacks, eps=eps, class_names=class_names,
                batch_size=batch_size, device=device, seed=seed, keep_probs=keep_probs,
                progress=progress, perf=perf)


def evaluate_worst_case(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[str] | Mapping[str, Attack] = ("fgsm", "pgd20"),
    *,
    eps: float | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    keep_probs: bool = False,
    progress: bool = True,
    perf: PerfConfig | None = None,
) -> EvalResults:
    """Cascade evaluation (as AutoAttack): each attack runs only on examples still robust.

    Attacks run in the given order (put cheap ones first). Attack k is run
    only on examples that are clean-correct and not fooled by attacks 1..k-1,
    so ``adv_pred[name_k]`` is the worst case over attacks 1..k: an example
    fooled earlier keeps the prediction (and probabilities) of the first
    attack that fooled it. Per-attack accuracies are therefore cumulative and
    never increase along the order; they are *not* the accuracy under attack
    k alone (use :func:`evaluate` for that). ``adv_pred["worst"]`` holds the
    worst case over the whole suite (equal to the last attack's entry).
    Arguments and return type as in :func:`evaluate`. Since attacks see fewer
    examples, their random draws differ from :func:`evaluate`'s.
    """
    names = list(attacks)
    if WORST in names:
        raise ValueError(f"attack name {WORST!r} is reserved for the worst case of the cascade")
    return _run(_cascade_batch, model, images, labels, attacks, eps=eps, class_names=class_names,
                batch_size=batch_size, device=device, seed=seed, keep_probs=keep_probs,
                progress=progress, perf=perf)


def _run(batch_fn: BatchFn, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         attacks: Sequence[str] | Mapping[str, Attack], *, eps: float | None,
         class_names: Sequence[str] | None, batch_size: int, device: str | torch.device | None,
         seed: int, keep_probs: bool, progress: bool, perf: PerfConfig | None) -> EvalResults:
    """The batch loop shared by :func:`evaluate` and :func:`evaluate_worst_case`."""
    dev = resolve_device(device)
    model = prepare_model(model.to(dev), perf)
    built = make_attacks(model, attacks, eps)
    gens = {name: torch.Generator(dev).manual_seed(seed) for name in built}
    images, on_dev = to_device_once(images, dev), labels.to(dev)
    outs: dict[str, list[torch.Tensor]] = {}
    n = len(labels)
    with progress_tasks(list(built), n, progress, prefix="evaluating ") as advance, autocast(perf, dev):
        for start in range(0, n, batch_size):
            x = prepare_input(as_float(images[start : start + batch_size].to(dev)), perf)
            y = on_dev[start : start + batch_size]
            for name, logits in batch_fn(model, x, y, built, gens).items():
                outs.setdefault(name, []).append(logits.float().cpu())
                advance(name, len(y))
    results = _to_results(outs, labels, class_names, keep_probs)
    results.extras["zero_grad"] = zero_gradient_mask(model, images, labels, batch_size=batch_size, device=dev)
    return results


def to_device_once(images: torch.Tensor, device: torch.device, max_bytes: int = 2**31) -> torch.Tensor:
    """All images on ``device`` in one copy (kept uint8) when they take <= ``max_bytes``.

    Larger sets (ImageNet validation) stay where they are and go per batch.
    """
    return images.to(device) if images.numel() * images.element_size() <= max_bytes else images


def _attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                  gens: Mapping[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Clean logits and, per attack, logits on adversarial images (B, K).

    Only clean-correct examples are attacked; the others keep their clean logits.
    """
    clean = predict(model, x)
    ok = clean.argmax(1) == y
    out = {"clean": clean}
    for name, attack in attacks.items():
        out[name] = _attack_where(model, x, y, ok, clean, attack, gens[name])
    return out


def _cascade_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                   gens: Mapping[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """Clean logits, per attack the worst-case logits so far, and "worst" (B, K)."""
    current = predict(model, x)
    out = {"clean": current}
    for name, attack in attacks.items():
        robust = current.argmax(1) == y  # clean-correct and not fooled by earlier attacks
        current = out[name] = _attack_where(model, x, y, robust, current, attack, gens[name])
    out[WORST] = current
    return out


def _attack_where(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                  logits: torch.Tensor, attack: Attack, gen: torch.Generator) -> torch.Tensor:
    """``logits`` (B, K) with the rows in ``mask`` replaced by logits on attacked images."""
    logits = logits.clone()
    if mask.any():
        x_adv = attack(x[mask], y[mask], gen, clean_correct=True)  # mask is within the clean-correct
        logits[mask] = predict(model, x_adv).to(logits.dtype)
    return logits


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


def zero_gradient_mask(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256,
                       device: str | torch.device | None = "auto") -> np.ndarray:
    """(N,) bool: examples whose input gradient of the cross-entropy is exactly zero.

    A sanity check of AutoAttack: gradient-based attacks cannot move such
    examples (saturated softmax, non-differentiable layers: gradient masking).
    """
    dev = resolve_device(device)
    out = []
    with eval_mode(model):
        for start in range(0, len(labels), batch_size):
            x = as_float(images[start : start + batch_size].to(dev))
            grad, _ = grad_and_logits(model, x, labels[start : start + batch_size].to(dev), cross_entropy)
            out.append((grad.flatten(1) == 0).all(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)
