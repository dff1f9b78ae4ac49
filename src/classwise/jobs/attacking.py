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
    """How many of ``old``'s test examples are not what they were when measured: indices past the end,
    labels, and images (hashes taken by ``new`` where it saw them, else re-hashed from ``data`` in chunks)."""
    index, recorded = old.extras.get("index"), old.extras.get(EXAMPLE_HASH)
    if index is None or recorded is None:
        return 0  # results of an older classwise: nothing to compare with
    seen = recorded != NOT_ATTACKED
    index, recorded, labels = index[seen], recorded[seen], old.labels[seen]
    inside = index < len(data.test_y)
    changed = int((~inside).sum())
    index, recorded, labels = index[inside], recorded[inside], labels[inside]
    relabelled = data.test_y[torch.as_tensor(index)].numpy() != labels
    now = np.full(len(index), NOT_ATTACKED, dtype=np.int64)
    common, at_old, at_new = np.intersect1d(index, new.extras["index"], return_indices=True)
    now[at_old] = new.extras[EXAMPLE_HASH][at_new]
    rest = np.flatnonzero(now == NOT_ATTACKED)
    for chunk in np.array_split(rest, -(-len(rest) // HASH_CHUNK)) if len(rest) else []:
        idx = index[chunk]
        now[chunk] = example_hashes(data.test_images(idx), data.test_y[torch.as_tensor(idx)])
    return changed + int((relabelled | (recorded != now)).sum())


HASH_CHUNK = 4096  # test images decoded at a time to re-hash the examples a new evaluation did not see


def eval_indices(labels: torch.Tensor, examples: int | None, seed: int) -> np.ndarray:
    """Test-set indices of the evaluation: all, or a class-balanced sample of about ``examples``."""
    n = len(labels)
    if examples is None or examples >= n:
        return np.arange(n)
    k = int(labels.max()) + 1
    return np.sort(class_balanced_indices(labels, max(1, examples // k), seed=seed).numpy())


ROBUST_KEPT = 2  # of a bounded keep, at most this many robust examples per class (the rest fooled ones)


class AdvImages:
    """Adversarial images per attack, gathered during an evaluation: all (``--save-adv``) or a bounded keep.

    ``keep``: None keeps every image; else at most ``keep`` per class and attack
    (``eval.save_adv_per_class``): while attacking, the ``2 * keep`` of each class
    first in a seeded order of the test set (``priority``, (N_test,)) are held, and
    at saving :meth:`_final` keeps ``keep`` of them, fooled ones first and up to
    :data:`ROBUST_KEPT` robust ones. ``labels``: (N_test,) the test labels. The order does not depend on
    batches or processes, so the kept examples are the same wherever they are attacked.
    """

    def __init__(self, keep: int | None = None, labels: np.ndarray | None = None, seed: int = 0) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, torch.Tensor]]] = {}
        self.keep, self.labels = keep, labels
        self.priority = None if labels is None else np.random.default_rng(seed).permutation(len(labels))

    def sink(self, index: np.ndarray):
        """EvalOptions.adv_sink for images whose positions map to test-set indices ``index``."""
        def take(name: str, pos: np.ndarray, x_adv: torch.Tensor) -> None:
            self.parts.setdefault(name, []).append((index[pos], x_adv))
            self.prune(name)
        return take

    def prune(self, name: str) -> None:
        """A bounded keep holds at most ``2 * keep`` images per class of attack ``name``, first in the seeded order."""
        if self.keep is not None and self.labels is not None:
            self.parts[name] = [self._held(*self._joined(name), 2 * self.keep)]

    def _joined(self, name: str) -> tuple[np.ndarray, torch.Tensor]:
        parts = self.parts[name]
        return np.concatenate([i for i, _ in parts]), torch.cat([x for _, x in parts])

    def _held(self, index: np.ndarray, x: torch.Tensor, cap: int | np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """At most ``cap`` (one number, or (K,) per class) of each class, first in the seeded order."""
        kept = self._held_at(index, cap)
        return index[kept], x[torch.as_tensor(kept)]

    def _held_at(self, index: np.ndarray, cap: int | np.ndarray) -> np.ndarray:
        """Positions in ``index`` (sorted) of at most ``cap`` per class, first in the seeded order."""
        assert self.labels is not None and self.priority is not None
        caps = np.broadcast_to(np.asarray(cap), (int(self.labels.max()) + 1,))
        order = np.argsort(self.priority[index], kind="stable")
        seen = np.zeros(len(caps), dtype=np.int64)
        kept = []
        for o in order:
            c = self.labels[index[o]]
            if seen[c] < caps[c]:
                seen[c] += 1
                kept.append(o)
        return np.sort(np.array(kept, dtype=np.int64))

    def _final(self, spec: str, results: EvalResults) -> tuple[np.ndarray, torch.Tensor]:
        """The images saved for attack ``spec``: all, or the bounded keep.

        The keep: at most ``keep - ROBUST_KEPT`` fooled and ``ROBUST_KEPT`` robust ones per
        class, topped up to ``keep`` from the rest (a cascade records no per-attack
        predictions: then by the seeded order alone).
        """
        index, x = self._joined(spec)
        if self.keep is None or self.labels is None:
            return index, x
        pred = results.adv_pred.get(spec)
        where = {int(t): p for p, t in enumerate(results.extras["index"])}
        fooled = (np.zeros(len(index), bool) if pred is None
                  else pred[[where[int(t)] for t in index]] != self.labels[index])
        robust_cap = min(ROBUST_KEPT, self.keep)
        chosen = np.zeros(len(index), bool)
        for mask, cap in ((fooled, self.keep - robust_cap), (~fooled, robust_cap)):
            chosen[np.flatnonzero(mask)[self._held_at(index[mask], cap)]] = True
        per_class = np.bincount(self.labels[index[chosen]], minlength=int(self.labels.max()) + 1)
        rest = np.flatnonzero(~chosen)
        chosen[rest[self._held_at(index[rest], np.maximum(self.keep - per_class, 0))]] = True
        keep = torch.as_tensor(np.flatnonzero(chosen))
        return index[chosen], x[keep]

    def save(self, run: Run, facts: dict[str, dict], merged: dict[str, dict], results: EvalResults) -> None:
        """One file per attack, named as the run's results name it (the merged key with the same facts)."""
        for spec in self.parts:
            name = next((k for k, f in merged.items() if f == facts.get(spec)), spec)
            index, x = self._final(spec, results)
            order = np.argsort(index, kind="stable")
            run.save_adv(name, index[order], x[torch.as_tensor(order)], facts.get(spec, {}))


def attack_gathered(model: nn.Module, data: DataBundle, idx: np.ndarray, built: list[tuple[AttackConfig, Attack]],
                     opts: EvalOptions, cascade: bool, adv: AdvImages | None, dist: Dist) -> EvalResults:
    """:func:`_attack_all` over the ranks: every rank gets the whole results (and, with ``adv``, every image)."""
    results = _attack_all(model, data, idx, built, opts, cascade, adv)
    if adv is not None and dist.enabled:
        adv.parts = _merged_parts(dist.gather(adv.parts))
        for name in adv.parts:
            adv.prune(name)  # the same images as one process holds
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
    opts = opts if adv is None else dataclasses.replace(opts, adv_sink=adv.sink(idx), adv_sample=adv.keep is not None)
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
