"""The central record of an evaluation: per-sample predictions.

For N test examples it holds the true label, the clean prediction and, per
attack, the adversarial prediction. Every class-wise number is a pure
function of these arrays, so analyses re-run without re-attacking.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClasswiseError
from .fileio import atomic_open


NOT_ATTACKED = -1  # adv_pred value of an example outside an attack's sample


@dataclass
class EvalResults:
    """Per-sample results of one evaluation.

    Attributes:
        labels: (N,) int64 true labels.
        clean_pred: (N,) int64 predictions on clean images.
        adv_pred: attack name -> (N,) int64 predictions on adversarial images.
            Clean-misclassified examples keep their (wrong) clean prediction;
            examples outside an attack's sample (CW-inf and N-Attack run on
            200 per class by default) hold ``NOT_ATTACKED`` (-1).
        class_names: K class names; index = label.
        clean_probs: optional (N, K) float32 softmax on clean images.
        adv_probs: optional attack name -> (N, K) float32 softmax.
        extras: other per-sample arrays (N, ...), e.g. "zero_grad" (bool) for
            the sanity checks.
        facts: attack name -> the attack's identity (family, norm, eps, step,
            steps, restarts, loss, temperature, black_box, sample size...), as
            recorded when it ran (:meth:`classwise.attacks.Attack.facts`).
    """

    labels: np.ndarray
    clean_pred: np.ndarray
    adv_pred: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    clean_probs: np.ndarray | None = None
    adv_probs: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    facts: dict[str, dict] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def attacks(self) -> list[str]:
        return list(self.adv_pred)

    def correct(self, attack: str | None = None) -> np.ndarray:
        """(N,) bool: clean correctness (attack None) or robustness under ``attack``."""
        pred = self.clean_pred if attack is None else self.adv_pred[attack]
        return pred == self.labels

    def merged_into(self, older: "EvalResults") -> tuple["EvalResults", bool]:
        """These results plus ``older``'s other attacks, when both cover the same examples.

        Returns (results, merged). Attacks present in both take the new values;
        results over different examples are not merged (merged = False).
        """
        same = np.array_equal(self.labels, older.labels) and np.array_equal(self.clean_pred, older.clean_pred)
        if not same:
            return self, False
        adv = {k: v for k, v in older.adv_pred.items() if k not in self.adv_pred} | self.adv_pred
        probs = {k: v for k, v in older.adv_probs.items() if k not in self.adv_pred} | self.adv_probs
        extras = older.extras | self.extras
        facts = {k: v for k, v in older.facts.items() if k in adv} | self.facts
        return EvalResults(self.labels, self.clean_pred, adv, self.class_names, self.clean_probs, probs, extras,
                           facts), True

    def restricted(self, mask: np.ndarray) -> "EvalResults":
        """These results on the examples in ``mask`` (N,) bool only (every per-sample array cut alike)."""
        cut = lambda a: a[mask]  # noqa: E731
        return EvalResults(cut(self.labels), cut(self.clean_pred), {k: cut(v) for k, v in self.adv_pred.items()},
                           self.class_names, None if self.clean_probs is None else cut(self.clean_probs),
                           {k: cut(v) for k, v in self.adv_probs.items()},
                           {k: cut(v) for k, v in self.extras.items() if len(v) == len(mask)}, dict(self.facts))

    def cost(self, attack: str) -> dict[str, float] | None:
        """What ``attack`` spent (:func:`cost_totals` of its "forwards/<attack>" and "backwards/<attack>"
        records, written by :func:`classwise.evaluate.evaluate`); None without records (an older run, a
        worst case, an attack evaluated elsewhere)."""
        f, b = self.extras.get(f"forwards/{attack}"), self.extras.get(f"backwards/{attack}")
        return None if f is None or b is None else cost_totals(f, b)

    def evaluated(self, attack: str) -> np.ndarray:
        """(N,) bool: the examples ``attack`` was evaluated on (its sample)."""
        return self.adv_pred[attack] != NOT_ATTACKED

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        arrays = {"labels": self.labels, "clean_pred": self.clean_pred}
        arrays |= {f"adv_pred/{k}": v for k, v in self.adv_pred.items()}
        arrays |= {f"adv_probs/{k}": v for k, v in self.adv_probs.items()}
        arrays |= {f"extra/{k}": v for k, v in self.extras.items()}
        if self.clean_probs is not None:
            arrays["clean_probs"] = self.clean_probs
        arrays["class_names"] = np.array(json.dumps(self.class_names))
        arrays["facts"] = np.array(json.dumps(self.facts))
        with atomic_open(path) as f:
            np.savez_compressed(f, allow_pickle=True, **arrays)  # numpy's default, named: no array takes its place

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvalResults":
        """Read results written by :meth:`save` (no pickles are loaded); a damaged file is one clear error."""
        try:
            _check_sizes(path)
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except ClasswiseError:
            raise
        except Exception as e:  # truncated or flipped bytes: BadZipFile, EOFError, zlib.error, ValueError...
            raise ClasswiseError(f"cannot read per-sample results {path}: the file is damaged ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else 'no detail'}); re-run `classwise evaluate`") from e
        names = _checked_arrays(data, path)
        return cls(
            labels=data["labels"],
            clean_pred=data["clean_pred"],
            adv_pred={k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("adv_pred/")},
            class_names=names,
            clean_probs=data.get("clean_probs"),
            adv_probs={k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("adv_probs/")},
            extras={k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("extra/")},
            facts=json.loads(str(data["facts"])) if "facts" in data else {},
        )


def _checked_arrays(data: dict[str, np.ndarray], path: str | os.PathLike) -> list[str]:
    """The class names of a loaded results file, after checking its keys and shapes agree."""
    def bad(why: str) -> ClasswiseError:
        return ClasswiseError(f"per-sample results {path} are damaged ({why}); re-run `classwise evaluate`")

    missing = [k for k in ("labels", "clean_pred", "class_names") if k not in data]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    try:
        names = json.loads(str(data["class_names"]))
    except ValueError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("class_names is not a list of names")
    n, k = len(data["labels"]), len(names)
    for key, v in data.items():
        if key.startswith(("labels", "clean_pred", "adv_pred/")) and (v.shape != (n,) or v.dtype.kind not in "iu"):
            raise bad(f"{key} is not {n} integer predictions")
        if key.startswith(("clean_pred", "adv_pred/")) and n and not (v.min() >= NOT_ATTACKED and v.max() < k):
            raise bad(f"{key} holds predictions outside the {k} classes")
        if key.startswith(("clean_probs", "adv_probs/")) and (
                v.shape != (n, k) or v.dtype.kind != "f" or not np.all((v >= 0) & (v <= 1))):  # NaN fails too
            raise bad(f"{key} is not ({n}, {k}) finite probabilities in [0, 1]")
        if key.startswith("extra/") and (v.ndim == 0 or len(v) != n or v.dtype.kind not in "biuf"):
            raise bad(f"{key} is not a per-example record of {n} numbers")
    index = data.get("extra/index")
    if index is not None and n and (index.dtype.kind not in "iu" or index.min() < 0):
        raise bad("extra/index is not test-set indices (integers >= 0)")
    if n and not (0 <= data["labels"].min() and data["labels"].max() < k):
        raise bad(f"labels outside the {k} classes")
    return names


def cost_totals(forwards: Any, backwards: Any) -> dict[str, float]:
    """Totals of per-example pass counts (N,) (entries < 0: not evaluated).

    Returns {"forwards", "backwards": int totals, "examples": evaluated
    examples, "backwards_per_example": float}. For full-batch PGD-k on n
    clean-correct examples of N: forwards n (k + 1), backwards n k, examples
    N, backwards_per_example n k / N.
    """
    f, b = np.asarray(forwards), np.asarray(backwards)
    seen = f >= 0
    n = int(seen.sum())
    return {"forwards": int(f[seen].sum()), "backwards": int(b[seen].sum()), "examples": n,
            "backwards_per_example": float(b[seen].sum() / n) if n else 0.0}


def evaluation_cost(results: EvalResults, attacks: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """Per attack (default: all), :meth:`EvalResults.cost`; attacks without records are left out."""
    costs = {name: results.cost(name) for name in (results.attacks if attacks is None else attacks)}
    return {name: c for name, c in costs.items() if c is not None}


def _check_sizes(path: str | os.PathLike) -> None:
    """Refuse a results file whose arrays claim more bytes than the file holds (before any is allocated).

    Each member of the .npz is a .npy file: its header's shape and dtype fix the array's size, which can
    be no larger than the member's uncompressed size recorded in the zip directory.
    """
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if size > info.file_size:
                raise ClasswiseError(f"per-sample results {path} are damaged ({info.filename} claims shape "
                                     f"{shape}, {size} bytes, in {info.file_size}); re-run `classwise evaluate`")
