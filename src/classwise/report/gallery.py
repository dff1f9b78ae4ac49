"""Galleries: what each class turns into under attack, and the most exchanged pairs, as image strips.

The images come from the run's saved adversarial examples (adv/<attack>.safetensors,
kept for a bounded number of examples per class by every evaluation, all with
``--save-adv``), read back by the report job into :class:`GalleryData`; nothing
is re-attacked. Per shown class (all up to 20 classes, else the 10 weakest and
the 10 strongest) a strip shows up to :data:`FOOLED` fooled and :data:`ROBUST`
robust examples, chosen reproducibly (seeded by the class) among the saved ones:
clean image, adversarial image and the perturbation amplified to the full range,
captioned with the true and predicted class and the softmax confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis import confusion_counts
from ..analysis.schema import Summary
from ..results import EvalResults
from ..runfiles import RunFiles
from .glance import weakest_first
from .section import MAX_SHOWN_CLASSES, Gallery, Section, Shot, Strip, Tile, slug

FOOLED = 4  # fooled examples per class strip
ROBUST = 2  # robust examples per class strip, for contrast
PAIRS = 3  # most exchanged pairs shown
PAIR_SHOTS = 3  # examples per pair
EXTREMES = 10  # above MAX_SHOWN_CLASSES classes: the weakest and the strongest 10
CLASS_DIR = RunFiles(Path()).gallery.as_posix()  # figures/gallery: the per-class strips' thumbnails
PAIR_DIR = RunFiles(Path()).pairs.as_posix()  # figures/pairs: the exchanged pairs' thumbnails
HOMING_DIR = PAIR_DIR  # homing examples are flips too: the same folder


@dataclass(frozen=True, eq=False)
class GalleryData:
    """Saved adversarial examples of one attack, with what the report shows beside them.

    attack: the results key. index: (M,) test-set indices. clean, adv: (M, C, H, W)
    float32 in [0, 1]. confidence: (M,) softmax probability of the predicted class on
    the adversarial image, None when unknown. note: why some examples are missing, or "".
    """

    attack: str
    index: np.ndarray
    clean: np.ndarray
    adv: np.ndarray
    confidence: np.ndarray | None = None
    note: str = ""


def positions(results: EvalResults, index: np.ndarray) -> np.ndarray:
    """Positions in ``results`` of the test-set indices ``index`` (M,); -1 where the results lack one."""
    seen = np.asarray(results.extras.get("index", np.arange(len(results.labels))))
    where = {int(t): p for p, t in enumerate(seen)}
    return np.array([where.get(int(t), -1) for t in index], dtype=np.int64)


def pick(candidates: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` of ``candidates`` (positions), drawn reproducibly by ``seed``; all when fewer."""
    rng = np.random.default_rng(seed)
    return candidates[rng.permutation(len(candidates))[:count]]


def gallery_classes(summary: Summary) -> list[int]:
    """The classes that get a strip: all up to 20, else the 10 weakest and the 10 strongest (weakest first)."""
    order = weakest_first(summary)
    return order if len(order) <= MAX_SHOWN_CLASSES else order[:EXTREMES] + order[-EXTREMES:]


def _hwc(x: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) uint8 (grey images keep one channel)."""
    return np.clip(np.rint(np.transpose(x, (1, 2, 0)) * 255), 0, 255).astype(np.uint8)


def amplified(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, float]:
    """The perturbation (C, H, W) mapped to [0, 1] (0.5 = unchanged) so its largest entry reaches 0 or 1; the gain."""
    delta = adv - clean
    peak = float(np.abs(delta).max())
    gain = 0.5 / peak if peak > 0 else 1.0
    return 0.5 + delta * gain, gain


def _shot(data: GalleryData, m: int, names: tuple[str, ...], label: int, pred: int, where: str) -> Shot:
    """Clean, adversarial and amplified perturbation of saved example ``m``, captioned."""
    noise, gain = amplified(data.clean[m], data.adv[m])
    conf = "" if data.confidence is None else f" ({100 * float(data.confidence[m]):.0f}%)"
    t = int(data.index[m])
    stem = f"{where}/{slug(data.attack)}_{t}"
    tiles = (Tile(f"{stem}_clean.png", _hwc(data.clean[m]), f"clean test image {t}"),
             Tile(f"{stem}_adv.png", _hwc(data.adv[m]), f"adversarial image {t}"),
             Tile(f"{stem}_delta.png", _hwc(noise), f"perturbation x{gain:.0f}"))
    verdict = "robust" if pred == label else "fooled"
    return Shot(tiles, f"#{t} {names[label]} -> {names[pred]}{conf}, {verdict}; perturbation x{gain:.0f}")


def _labels_preds(data: GalleryData, results: EvalResults) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok (M,) bool: in the results and attacked, labels (M,), predictions under the attack (M,))."""
    pos = positions(results, data.index)
    ok = pos >= 0
    pos = np.where(ok, pos, 0)
    labels, pred = results.labels[pos], results.adv_pred[data.attack][pos]
    return ok & (pred >= 0), labels, pred


def class_strips(data: GalleryData, results: EvalResults, summary: Summary, seed: int = 0) -> tuple[Strip, ...]:
    """One strip per shown class: up to FOOLED fooled and ROBUST robust saved examples, seeded by the class."""
    ok, labels, pred = _labels_preds(data, results)
    names, out = summary.class_names, []
    for c in gallery_classes(summary):
        mine = ok & (labels == c)
        fooled = pick(np.flatnonzero(mine & (pred != c)), FOOLED, seed + c)
        robust = pick(np.flatnonzero(mine & (pred == c)), ROBUST, seed + c)
        shots = tuple(_shot(data, int(m), names, c, int(pred[m]), CLASS_DIR) for m in [*fooled, *robust])
        label = f"{names[c]}: {len(fooled)} fooled, {len(robust)} robust of {int(mine.sum())} saved"
        out.append(Strip(label, shots, anchor=names[c]))
    return tuple(out)


def gallery_section(data: GalleryData, results: EvalResults, summary: Summary) -> Section:
    """The per-class gallery section under ``data.attack``."""
    text = (f"Per class, saved examples under {data.attack}, chosen reproducibly (seeded by the class) among "
            f"the fooled ones ({FOOLED} at most) and the robust ones ({ROBUST} at most): clean image, "
            "adversarial image, and the perturbation amplified to the full range (grey = unchanged); the "
            "caption gives the true and the predicted class with its softmax confidence.")
    return Section(f"Gallery under {data.attack}", text + (f" {data.note}" if data.note else ""),
                   gallery=Gallery(class_strips(data, results, summary)))


def top_pairs(results: EvalResults, attack: str, k: int, count: int = PAIRS) -> list[tuple[int, int, int, float]]:
    """The ``count`` most exchanged (true i, predicted j != i) pairs: (i, j, examples, share of class i in %)."""
    seen = results.evaluated(attack)
    counts = confusion_counts(results.labels[seen], results.adv_pred[attack][seen], k).astype(np.int64)
    rows = counts.sum(axis=1)
    np.fill_diagonal(counts, 0)
    flat = np.argsort(-counts, axis=None, kind="stable")[:count]
    pairs = [(int(f // k), int(f % k)) for f in flat]
    return [(i, j, int(counts[i, j]), 100 * counts[i, j] / rows[i]) for i, j in pairs if counts[i, j] > 0]


def confound_section(data: GalleryData, results: EvalResults, summary: Summary, seed: int = 0) -> Section:
    """The most exchanged pairs of the robustness confusion matrix, each with its count, share and examples."""
    ok, labels, pred = _labels_preds(data, results)
    names, strips = summary.class_names, []
    for i, j, n, share in top_pairs(results, data.attack, summary.num_classes):
        shots = pick(np.flatnonzero(ok & (labels == i) & (pred == j)), PAIR_SHOTS, seed + i * summary.num_classes + j)
        label = f"{names[i]} -> {names[j]}: {n} examples, {share:.1f}% of {names[i]}"
        strips.append(Strip(label, tuple(_shot(data, int(m), names, i, j, PAIR_DIR) for m in shots),
                            anchor=names[i]))
    return Section(f"Most exchanged pairs under {data.attack}",
                   "The largest off-diagonal cells of the robustness confusion matrix: how many test examples "
                   "of the true class the attack turned into the other class, their share of the true class, "
                   "and saved examples of such flips (none shown when none was saved).",
                   gallery=Gallery(tuple(strips)))


def homing_section(data: GalleryData, results: EvalResults, summary: Summary, homing: dict) -> Section | None:
    """Per removed class j: saved examples flipped into j that home (robust once j is gone) and that do not.

    ``homing``: homing.json (:func:`classwise.homing.homing_record`); None when it records no
    per-example outcome (``homed_index``) or was measured under another attack than ``data``'s.
    """
    items = [p for p in homing.get("per_removed", []) if "homed_index" in p]
    if homing.get("attack") != data.attack or not items:
        return None
    ok, labels, pred = _labels_preds(data, results)
    names, strips = summary.class_names, []
    for item in items:
        j, homed = item["class"], np.isin(data.index, item["homed_index"])
        flipped = ok & (pred == j) & (labels != j)
        for verdict, mask in (("home", flipped & homed), ("do not home", flipped & ~homed)):
            picked = pick(np.flatnonzero(mask), PAIR_SHOTS, j)
            shots = tuple(_shot(data, int(m), names, int(labels[m]), j, HOMING_DIR) for m in picked)
            strips.append(Strip(f"without {names[j]}: flipped into {names[j]} and {verdict} "
                                f"({len(picked)} of {int(mask.sum())} saved)", shots, anchor=names[j]))
    return Section(f"Homing examples under {data.attack}",
                   "Per removed class, saved examples that the attack flipped into it: those the model retrained "
                   "without that class classifies correctly under the same attack (they home) and those it does "
                   "not (figure 3).", gallery=Gallery(tuple(strips)))
