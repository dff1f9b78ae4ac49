"""What an evaluation attacks: its test examples, each attack's sample, the cascade, gathering over
ranks, and the adversarial images it keeps (``--save-adv``)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
from torch import nn

from ..analysis import protocol_attack
from ..attacks import Attack
from ..config import AttackConfig
from ..data import DataBundle, StreamBundle, class_balanced_indices
from ..errors import ClasswiseError
from ..evaluate import EvalOptions, evaluate
from ..identity import EXAMPLE_HASH
from ..results import NOT_ATTACKED, EvalResults
from ..runs import Run
from ..train.distributed import Dist

# Softmax probabilities (figure 5a) are kept when N * K is at most this (80 MB as float32).
PROBS_MAX_VALUES = 20_000_000


def example_hashes(images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """What each test example was when measured: (N,) int64, the first 8 bytes of the SHA-256 of its label
    and image (N, C, H, W) bytes. Results keep them (``extras["example_hash"]``, ``identity.EXAMPLE_HASH``)."""
    y = labels.to(torch.int64).cpu().numpy()
    x = images.contiguous().cpu().numpy().reshape(len(y), -1)
    return np.array([np.frombuffer(hashlib.sha256(y[i].tobytes() + x[i].tobytes()).digest()[:8], "<i8")[0]
                     for i in range(len(y))], dtype=np.int64)


def changed_examples(old: EvalResults, data: DataBundle | StreamBundle, new: EvalResults) -> int:
    """How many of ``old``'s test examples are not what they were when measured: labels of all of them
    (and indices past the end), images where ``new`` (just measured, images at hand) saw them too."""
    index, recorded = old.extras.get("index"), old.extras.get(EXAMPLE_HASH)
    if index is None or recorded is None:
        return 0  # results of an older classwise: nothing to compare with
    seen = recorded != NOT_ATTACKED
    index, recorded, labels = index[seen], recorded[seen], old.labels[seen]
    inside = index < len(data.test_y)
    changed = int((~inside).sum())
    index, recorded, labels = index[inside], recorded[inside], labels[inside]
    changed += int((data.test_y[torch.as_tensor(index)].numpy() != labels).sum())
    common, at_old, at_new = np.intersect1d(index, new.extras["index"], return_indices=True)
    return changed + int((recorded[at_old] != new.extras[EXAMPLE_HASH][at_new]).sum()) if common.size else changed


def eval_indices(labels: torch.Tensor, examples: int | None, seed: int) -> np.ndarray:
    """Test-set indices of the evaluation: all, or a class-balanced sample of about ``examples``."""
    n = len(labels)
    if examples is None or examples >= n:
        return np.arange(n)
    k = int(labels.max()) + 1
    return np.sort(class_balanced_indices(labels, max(1, examples // k), seed=seed).numpy())


class AdvImages:
    """Adversarial images per attack, gathered during an evaluation (``save_adv``)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, torch.Tensor]]] = {}

    def sink(self, index: np.ndarray):
        """EvalOptions.adv_sink for images whose positions map to test-set indices ``index``."""
        return lambda name, pos, x_adv: self.parts.setdefault(name, []).append((index[pos], x_adv))

    def save(self, run: Run, facts: dict[str, dict], merged: dict[str, dict]) -> None:
        """One file per attack, named as the run's results name it (the merged key with the same facts)."""
        for spec, parts in self.parts.items():
            name = next((k for k, f in merged.items() if f == facts.get(spec)), spec)
            index = np.concatenate([i for i, _ in parts])
            order = np.argsort(index, kind="stable")
            run.save_adv(name, index[order], torch.cat([x for _, x in parts])[torch.as_tensor(order)],
                         facts.get(spec, {}))


def attack_gathered(model: nn.Module, data: DataBundle, idx: np.ndarray, built: list[tuple[AttackConfig, Attack]],
                     opts: EvalOptions, cascade: bool, adv: AdvImages | None, dist: Dist) -> EvalResults:
    """:func:`_attack_all` over the ranks: every rank gets the whole results (and, with ``adv``, every image)."""
    results = _attack_all(model, data, idx, built, opts, cascade, adv)
    if adv is not None and dist.enabled:
        adv.parts = _merged_parts(dist.gather(adv.parts))
    return results


def _merged_parts(per_rank: list[dict[str, list]]) -> dict[str, list]:
    """Adversarial-image parts of every rank, per attack (their order does not matter: saving sorts by index)."""
    out: dict[str, list] = {}
    for parts in per_rank:
        for name, items in parts.items():
            out.setdefault(name, []).extend(items)
    return out


def _attack_all(model: nn.Module, data: DataBundle | StreamBundle, idx: np.ndarray, built: list[tuple[AttackConfig, Attack]],
                opts: EvalOptions, cascade: bool, adv: AdvImages | None = None) -> EvalResults:
    """Per-sample results on the test examples ``idx`` (with ``index`` = idx), keyed by attack config."""
    x, y = data.test_images(idx), data.test_y[idx]  # streamed: only these files are decoded
    opts = opts if adv is None else dataclasses.replace(opts, adv_sink=adv.sink(idx))
    keep_probs = len(y) * data.num_classes <= PROBS_MAX_VALUES
    attacks = {cfg.to_text(): attack for cfg, attack in built}
    if cascade:
        results = evaluate(model, x, y, attacks, class_names=data.class_names, cascade=True, options=opts)
        results = dataclasses.replace(results, adv_pred={"worst": results.adv_pred["worst"]}, adv_probs={},
                                      facts={"worst": results.facts["worst"] | common_threat(built)})
    else:
        sizes = {text: cfg.examples_per_class for text, (cfg, _) in zip(attacks, built)}
        results = _each_attack(model, x, y, attacks, data, opts, keep_probs, adv, idx, sizes)
    results.extras["index"] = idx
    results.extras[EXAMPLE_HASH] = example_hashes(x, y)
    for text, (cfg, _) in zip(attacks, built):
        if text in results.facts:
            results.facts[text] = {"config": dataclasses.asdict(cfg), **results.facts[text]}
    return results


def common_threat(built: list[tuple[AttackConfig, Attack]]) -> dict[str, object]:
    """The eps and norm that every attack of a cascade shares (one error otherwise)."""
    threats = {(f["norm"], f["eps"]) for f in (a.facts() for _, a in built)}
    if len(threats) != 1:
        raise ClasswiseError("--cascade needs attacks of one eps and norm (the worst case mixes no threat models)")
    norm, eps = threats.pop()
    return {"norm": norm, "eps": eps}


def _each_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict[str, Attack],
                 data: DataBundle | StreamBundle, opts: EvalOptions, keep_probs: bool, adv: AdvImages | None = None,
                 idx: np.ndarray | None = None, sizes: dict[str, int | None] | None = None) -> EvalResults:
    """Every attack on its own: full-set attacks in one pass, sampled attacks on their sample.

    ``sizes``: attack -> its config's ``examples_per_class`` (None: the attack's default).
    Samples of one seed are nested (a smaller one is part of a larger one).
    """
    sizes = sizes or {}
    per_class = {k: _per_class(a, y, data.num_classes, sizes.get(k)) for k, a in attacks.items()}
    full = {k: a for k, a in attacks.items() if per_class[k] is None}
    results = evaluate(model, x, y, full, class_names=data.class_names, options=opts, keep_probs=keep_probs)
    for key, attack in attacks.items():
        n = per_class[key]
        if n is None:
            continue
        sample = class_balanced_indices(y, n, seed=opts.seed)
        sink = None if adv is None or idx is None else adv.sink(idx[sample.numpy()])
        part = evaluate(model, x[sample], y[sample], {key: attack}, class_names=data.class_names,
                        options=dataclasses.replace(opts, adv_sink=sink, zero_grad=False))  # the full pass has it
        pred = np.full(len(y), NOT_ATTACKED, dtype=np.int64)
        pred[sample.numpy()] = part.adv_pred[key]
        results.adv_pred[key] = pred
        results.facts[key] = part.facts[key]
    results.adv_pred = {k: results.adv_pred[k] for k in attacks}  # the order the user gave
    return results


def _per_class(attack: Attack, y: torch.Tensor, num_classes: int, requested: int | None = None) -> int | None:
    """The attack's sample per class (``requested``, else its default), if smaller than the evaluation set's."""
    per_class = requested if requested is not None else attack.default_per_class
    smallest = int(torch.bincount(y, minlength=num_classes).min())
    return per_class if per_class is not None and per_class < smallest else None


def headline_probs_only(results: EvalResults) -> EvalResults:
    """Keep adversarial probabilities only for the protocol attack (figure 5a needs no others)."""
    head = protocol_attack(results.attacks, results.facts)
    return dataclasses.replace(results, adv_probs={k: v for k, v in results.adv_probs.items() if k == head})
