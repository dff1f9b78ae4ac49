"""The run folder's file names (:class:`RunFiles`, :data:`OWN_FILES`) and checks of its JSON files as
read back: one clear error for a damaged file.

``metrics.jsonl`` and ``meta.json`` are written by classwise, but a user may edit,
truncate or replace them; the report must then refuse with one line naming the
file, never fail deep inside a figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ClasswiseError
from .fileio import MANIFEST, safe_name

META_KEYS = ("dataset", "model", "checkpoint", "eps", "superclasses", "train_method", "attacks")


def _damaged(path: Path, why: str, fix: str) -> ClasswiseError:
    return ClasswiseError(f"{path} is damaged ({why}); {fix}")


def _is_number(v: Any, nullable: bool = True) -> bool:
    if v is None:
        return nullable
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_metrics(records: list, path: Path, num_classes: int) -> list[dict]:
    """``records`` of metrics.jsonl when every line is an epoch record; else one error naming the line."""
    fix = "restore it, or delete it to report without the per-epoch figure"
    for i, r in enumerate(records, 1):
        if not isinstance(r, dict) or not isinstance(r.get("epoch"), int) or isinstance(r.get("epoch"), bool):
            raise _damaged(path, f"line {i} is not an epoch record with an integer 'epoch'", fix)
        for block in ("clean", "robust"):
            b = r.get(block)
            if b is None:
                continue
            per_class = b.get("per_class") if isinstance(b, dict) else None
            if (not isinstance(per_class, list) or len(per_class) != num_classes
                    or not all(_is_number(v) for v in per_class) or not _is_number(b.get("overall"))):
                raise _damaged(path, f"line {i}: '{block}' is not an overall number and {num_classes} per-class numbers", fix)
    return records


def check_meta(meta: Any, path: Path, num_classes: int | None = None, attacks: Iterable[str] | None = None) -> dict:
    """meta.json as a mapping with the keys the report reads, of the right types, naming exactly ``attacks``
    (those of results.npz, when given); else one error."""
    fix = "re-run `classwise evaluate` to rewrite it"
    if not isinstance(meta, dict):
        raise _damaged(path, f"a JSON object was expected, found {type(meta).__name__}", fix)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise _damaged(path, f"no {', '.join(missing)}", fix)
    if not isinstance(meta["checkpoint"], str) or not isinstance(meta["attacks"], dict):
        raise _damaged(path, "'checkpoint' must be a name and 'attacks' a mapping", fix)
    eps = meta["eps"]
    if not (_is_number(eps, False) or (isinstance(eps, dict) and all(_is_number(v, False) for v in eps.values()))):
        raise _damaged(path, "'eps' must be a number or a mapping of attack to number", fix)
    sup = meta["superclasses"]
    k = num_classes if num_classes is not None else math.inf
    if not isinstance(sup, dict) or not all(
            isinstance(v, list) and all(isinstance(c, int) and 0 <= c < k for c in v) for v in sup.values()):
        raise _damaged(path, "'superclasses' must map names to lists of class indices", fix)
    if attacks is not None and set(attacks) != set(meta["attacks"]):
        differ = sorted(set(attacks) ^ set(meta["attacks"]))
        raise _damaged(path, f"its attacks are not those of results.npz beside it ({', '.join(differ[:5])} in one "
                             "only)", "restore both, or re-run `classwise evaluate` into a new run")
    return meta


MARKER = "classwise-run.json"
LOCK = ".classwise.lock"
TRAIN_STATE = "last.state.safetensors"  # the training state beside the checkpoints (resume reads it)
# The layout: every file classwise writes into a run folder (glob patterns relative to it); RunFiles names
# each one. What ``--overwrite`` may delete is decided by the run's manifest (``fileio.MANIFEST``: the files
# classwise recorded as written), never by these patterns: a user's file of a matching name is kept.
OWN_FILES = (
    MARKER, LOCK, MANIFEST, "config.yaml", "version.json", "status.json", "metrics.jsonl", "train.log", "validation.json",
    "results.npz", "meta.json", "model.json", "summary.json", "report.md", "report.html", "checkpoints/*.safetensors",
    "figures/*.png", "figures/*.svg", "figures/gallery/*.png", "figures/pairs/*.png", "figures/*/.*.tmp",
    "tables/*.csv", "tables/*.md", "homing/*.json", "homing/*.csv", "homing/*.png",
    "homing/*.svg", "compare/*", "tensorboard/*", "adv/*.safetensors", "superseded/*", ".evaluation/*.safetensors", ".*.tmp",
    "checkpoints/.*.tmp", "*/.*.tmp",
)

# The files of the layout that commands read back (RunFiles accessor names): each is checked before use, and a
# damaged one is one error naming it (tests/test_bad_inputs.py damages each of them for every reading command).
READ_BACK = ("marker", "config", "status", "metrics", "meta", "summary", "results", "model_json")


@dataclass(frozen=True)
class RunFiles:
    """Where each file of a run folder lives: one accessor per file or folder of the layout.

    The one place a run's file names are spelled (``classwise.runs`` documents the
    layout; :data:`OWN_FILES` lists what ``--overwrite`` may delete). Writers below
    the run folder's floor (training loop, TensorBoard, report) are handed these
    paths, never a literal.
    """

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def manifest(self) -> Path:
        """Every file classwise wrote into the run, one relative path a line (``fileio.record_written``)."""
        return self.root / MANIFEST

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def version(self) -> Path:
        return self.root / "version.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics(self) -> Path:
        """One JSON line per epoch."""
        return self.root / "metrics.jsonl"

    @property
    def train_log(self) -> Path:
        return self.root / "train.log"

    @property
    def validation(self) -> Path:
        """The validation split a fairness method held out of the training set (indices, seed)."""
        return self.root / "validation.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, name: str = "last") -> Path:
        return self.checkpoints / f"{name}.safetensors"

    @property
    def train_state(self) -> Path:
        """Optimiser, schedule and random state of the last epoch (``--resume`` reads it)."""
        return self.checkpoints / TRAIN_STATE

    @property
    def model_json(self) -> Path:
        """Outside models only: what rebuilds the model (spec, weights file and its SHA-256)."""
        return self.root / "model.json"

    @property
    def results(self) -> Path:
        return self.root / "results.npz"

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def figures(self) -> Path:
        """PNG and SVG figures of the report (it names each inside: ``classwise.report.figures.path_of``)."""
        return self.root / "figures"

    @property
    def gallery(self) -> Path:
        """Gallery thumbnails of the report: per class (``figures/gallery/``), per exchanged pair (``figures/pairs/``)."""
        return self.figures / "gallery"

    @property
    def pairs(self) -> Path:
        return self.figures / "pairs"

    @property
    def tables(self) -> Path:
        """CSV and Markdown tables of the report (it names each inside: ``classwise.report.tables.path_of``)."""
        return self.root / "tables"

    @property
    def evaluation_state(self) -> Path:
        """Finished batches of an evaluation in progress (``classwise.evalstate``); removed when it ends."""
        return self.root / ".evaluation"

    @property
    def adv(self) -> Path:
        """Adversarial images per attack (``evaluate --save-adv``)."""
        return self.root / "adv"

    def adv_file(self, attack: str) -> Path:
        """adv/<attack>.safetensors, the attack's name made safe and short enough for a file name."""
        return self.adv / safe_name(attack, ".safetensors")

    @property
    def homing(self) -> Path:
        """The homing experiment: homing.{json,csv,png}, misclassified.csv, nested retrain runs."""
        return self.root / "homing"

    @property
    def homing_json(self) -> Path:
        """The homing record (matrices, share, per removed class); the report shows it when present."""
        return self.homing / "homing.json"

    @property
    def homing_csv(self) -> Path:
        return self.homing / "homing.csv"

    @property
    def homing_misclassified_csv(self) -> Path:
        return self.homing / "misclassified.csv"

    @property
    def homing_figure(self) -> Path:
        """homing.png (and homing.svg beside it)."""
        return self.homing / "homing.png"

    def homing_retrain(self, j: int) -> Path:
        """The nested run retrained without class ``j``."""
        return self.homing / f"class_{j}"

    @property
    def compare(self) -> Path:
        """``classwise compare``'s default output (of the last run compared)."""
        return self.root / "compare"

    @property
    def superseded(self) -> Path:
        """Results of a model the run no longer holds (trained further, or another test set), one folder each:
        ``superseded/<time>/`` with the results, report and ``superseded.json`` (why, which checkpoint)."""
        return self.root / "superseded"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (``train.tensorboard``)."""
        return self.root / "tensorboard"
