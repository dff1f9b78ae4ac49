"""The run folder: everything about one run, behind one :class:`Run` object.

Layout (the one place it is written down; :class:`classwise.runfiles.RunFiles`, ``Run.files``,
has one accessor per entry, and every writer gets its paths from there)::

    run/classwise-run.json     marker: this folder is classwise's (format version, creation time)
    run/config.yaml            resolved config
    run/version.json           classwise version and git commit
    run/status.json            {"state": ..., "trained": bool, "error": ...}
    run/metrics.jsonl          one JSON line per epoch (class-wise clean and robust accuracy)
    run/train.log              one line per epoch, as printed
    run/checkpoints/*.safetensors
    run/model.json             outside models only (origin "outside", :class:`OutsideWeights`): the model
                               spec, weights file and its SHA-256, normalisation, RobustBench version
    run/results.npz            per-sample results over the whole test set
    run/meta.json              what produced the results: model, checkpoint, each attack's identity
    run/summary.json           headline numbers (written last, with the report)
    run/figures/ run/tables/ run/report.md run/report.html
    run/homing/ run/compare/ run/tensorboard/ run/adv/
    run/superseded/<time>/     results, summary and report of a model (or test set) the run no longer holds
    run/.classwise-files       manifest: every file classwise wrote into the run (``--overwrite`` deletes only these)

Where the model comes from is :attr:`Run.source`: :class:`OurCheckpoints` (trained by
classwise) or :class:`OutsideWeights` (``evaluate --model``), one interface (load,
head weight, digest, describe), chosen once from the marker's origin.

States: "created", "training", "trained", "evaluating", "reporting", "homing",
"complete", "failed", "interrupted". ``trained`` says whether training finished (an evaluation that
fails leaves a trained model). A run is complete only when status.json says so.
One process writes a run at a time (:meth:`Run.lock`, an OS lock released when
the process dies); readers that only add nested runs (homing retrains, each
locking its own folder) share :meth:`Run.shared_lock`, which keeps writers out
while they work. ``--overwrite`` deletes only marked folders holding nothing
but files their manifest records.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import __version__
from .checkpoint import atomic_save, file_sha256, head_weight, load_model_file, load_outside, safe_load
from .models import classifier_layer
from .config import RunConfig, dump_config, load_run_config
from .data import DataBundle, StreamBundle, load_data, remove_class, subsample_train
from .errors import ClasswiseError, Terminated
from .fileio import (MANIFEST, TEMPORARY, atomic_write, move_written, read_json, read_jsonl, start_ledger,
                     user_os_error, write_json, written)
from .results import EvalResults
from .runfiles import LOCK, MARKER, RunFiles

FORMAT = 1
SUB_RUNS = (RunFiles(Path()).homing.name,)  # folders of nested runs (homing retrains), each checked as a run
# What an evaluation and its report write (results.npz first): moved aside together when the model changes.
_RESULT_ENTRIES = tuple(getattr(RunFiles(Path()), name).name for name in (
    "results", "meta", "summary", "report_md", "report_html", "figures", "tables", "adv", "homing", "compare"))
TRAINED_STATES = ("trained", "evaluating", "reporting", "complete")
STATES = ("created", "training", *TRAINED_STATES, "homing", "failed", "interrupted")  # status.json's "state"
_HELD: dict[Path, tuple[int, int]] = {}  # this process's locks: folder -> (fd, depth)


def _foreign_files(path: Path) -> list[str]:
    """Files under ``path`` that its manifest does not record as classwise's (nested runs checked recursively).

    Besides the manifest's entries, only the manifest itself, the lock file and temporaries of
    atomic writes cut short (``fileio.TEMPORARY``) are classwise's; a link is never.
    """
    own = written(path) | {MANIFEST, LOCK}
    foreign = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).as_posix()
        if (f.is_dir() and not f.is_symlink()) or _in_sub_run(path, f):
            continue
        if f.is_symlink() or not (rel in own or TEMPORARY.fullmatch(f.name)):
            foreign.append(rel)
    for sub in (p for s in SUB_RUNS for p in (path / s).glob("*") if p.is_dir() and not p.is_symlink()):
        if RunFiles(sub).marker.is_file() and (sub / MANIFEST).is_file():
            foreign += [f"{sub.relative_to(path).as_posix()}/{r}" for r in _foreign_files(sub)]
    return foreign


def _in_sub_run(root: Path, f: Path) -> bool:
    rel = f.relative_to(root).parts
    sub = root / rel[0] / rel[1] if len(rel) > 2 else None
    return sub is not None and rel[0] in SUB_RUNS and RunFiles(sub).marker.is_file() and (sub / MANIFEST).is_file()


def _refuse_overwrite(path: Path) -> None:
    """Raise unless ``path`` is a classwise run holding only classwise's files."""
    if path.is_symlink():
        raise ClasswiseError(f"refusing to overwrite {path}: it is a symbolic link (pass the real folder)")
    if not RunFiles(path).marker.is_file():
        raise ClasswiseError(f"refusing to overwrite {path}: it is not a classwise run folder (no {MARKER})")
    if not (path / MANIFEST).is_file():
        raise ClasswiseError(f"refusing to overwrite {path}: it has no record of the files classwise wrote "
                             f"({MANIFEST}; made by an older classwise?); delete it yourself or choose another --out")
    foreign = _foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ClasswiseError(f"refusing to overwrite {path}: it holds files classwise did not write ({shown}); "
                             "move them away first")


@dataclasses.dataclass(frozen=True)
class OurCheckpoints:
    """The models classwise trained into a run: one per checkpoint file (origin "train")."""

    files: RunFiles
    origin: ClassVar[str] = "train"

    def names(self) -> list[str]:
        """The checkpoints saved (``last``, ``epoch75``...), training-state files left out."""
        return sorted(p.name.split(".")[0] for p in self.files.checkpoints.glob("*.safetensors")
                      if ".state." not in p.name)

    def load(self, checkpoint: str = "last", device: str | torch.device = "cpu") -> nn.Module:
        """The model at ``checkpoint``, rebuilt from the checkpoint's own metadata, in eval mode."""
        path = self.files.checkpoint(checkpoint)
        if not path.is_file():
            found = ", ".join(self.names()) or "none"
            raise ClasswiseError(f"no checkpoint '{checkpoint}' in {path.parent} (found: {found})")
        model, _ = load_model_file(path)
        return model.to(device).eval()

    def head_weight(self, checkpoint: str = "last") -> torch.Tensor | None:
        """The classifier weight (K, D) of ``checkpoint``, if the model has a ``head``."""
        return head_weight(self.files.checkpoint(checkpoint))

    def digest(self, checkpoint: str = "last") -> dict[str, str]:
        """The evaluated model: checkpoint name and the SHA-256 of its file."""
        return {"checkpoint": checkpoint, "sha256": file_sha256(self.files.checkpoint(checkpoint))}

    def describe(self) -> dict[str, Any]:
        """meta.json entries that say where the model comes from beyond its digest: none for our own."""
        return {}


@dataclasses.dataclass(frozen=True)
class OutsideWeights:
    """A model classwise did not train (origin "outside"): one model, rebuilt from model.json.

    model.json holds the spec, the weights file and its SHA-256, the normalisation
    and, for RobustBench, its version (:func:`classwise.checkpoint.outside_meta`).
    Any checkpoint name means that one model.
    """

    files: RunFiles
    origin: ClassVar[str] = "outside"

    def record(self) -> dict[str, Any]:
        """model.json, or one error when it is missing."""
        if not self.files.model_json.is_file():
            raise ClasswiseError(f"{self.files.root} is an outside-model run without model.json; make it again "
                                 "with `classwise evaluate --model ... --overwrite`")
        return read_json(self.files.model_json)

    def save(self, record: dict[str, Any]) -> None:
        write_json(self.files.model_json, record)

    def load(self, checkpoint: str = "last", device: str | torch.device = "cpu") -> nn.Module:
        return load_outside(self.record(), self.files.model_json).to(device).eval()

    def head_weight(self, checkpoint: str = "last") -> torch.Tensor | None:
        """The weight (K, D) of its classifier: ``head``, else its last ``nn.Linear`` with K outputs
        (:func:`classwise.models.classifier_layer`)."""
        found = classifier_layer(self.load(), int(self.record()["num_classes"]))
        return None if found is None else found[1].weight.detach().cpu()

    def digest(self, checkpoint: str = "last") -> dict[str, str]:
        """The evaluated model: "outside" and the SHA-256 of the weights file."""
        return {"checkpoint": "outside", "sha256": self.record().get("sha256") or "none (fresh weights)"}

    def describe(self) -> dict[str, Any]:
        """meta.json entries: origin, weights file and SHA-256, normalisation, classifier."""
        rec = self.record()
        keep = ("weights", "sha256", "normalization", "mean", "std", "classifier", "robustbench", "kwargs")
        return {"origin": "outside", "train_method": "outside model (not trained by classwise)",
                "outside": {k: rec[k] for k in keep if k in rec}, "classifier": rec.get("classifier")}


ModelSource = OurCheckpoints | OutsideWeights
SOURCES: dict[str, type[OurCheckpoints] | type[OutsideWeights]] = {c.origin: c for c in (OurCheckpoints, OutsideWeights)}


@dataclasses.dataclass(eq=False)
class Run:
    """One run folder. Create with :meth:`create`, open an existing one with :meth:`open`."""

    path: Path

    @cached_property
    def files(self) -> RunFiles:
        """Where each file of the run lives (one accessor per file or folder of the layout)."""
        return RunFiles(self.path)

    # -- creation and opening ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, config: RunConfig, *, overwrite: bool = False, origin: str = "train") -> "Run":
        """A new run folder for ``config`` (marker, config, version, status "created").

        An existing non-empty folder is refused unless ``overwrite``; then only a
        marked folder holding nothing but classwise's files is emptied (under its
        lock, so a live run is never deleted). Nothing is written into a refused folder.
        """
        path, source = Path(path), SOURCES[origin]
        _check_new(path, overwrite, source is OurCheckpoints)
        _mkdir(path)
        run = cls(path)
        with run.lock():
            if _entries(path):
                _check_new(path, overwrite, source is OurCheckpoints)
                for child in _entries(path):
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            start_ledger(path)
            _mkdir(run.files.checkpoints)
            write_json(run.files.marker, {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                          "origin": source.origin})
            run.save_config(config)
            write_json(run.files.version, version_info())
            run.set_status("created", trained=False)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        """An existing run folder, or one clear error."""
        files = RunFiles(Path(path))
        if not files.marker.is_file():
            hint = " (made by an older classwise? train it again)" if files.config.is_file() else ""
            raise ClasswiseError(f"{path} is not a classwise run folder (no {MARKER}){hint}; "
                                 "make one with `classwise train` or `classwise evaluate --model`")
        return cls(files.root)

    # -- config, status, lock -----------------------------------------------------------------

    @cached_property
    def config(self) -> RunConfig:
        return load_run_config(self.files.config)

    def save_config(self, config: RunConfig) -> None:
        atomic_write(self.files.config, dump_config(config))
        self.__dict__["config"] = config

    @property
    def source(self) -> ModelSource:
        """Where the run's model comes from: our checkpoints, or outside weights (``evaluate --model``)."""
        origin = read_json(self.files.marker).get("origin", "train")
        if not isinstance(origin, str) or origin not in SOURCES:
            raise ClasswiseError(f"{self.files.marker} is damaged (unknown origin {origin!r}); make the run again")
        return SOURCES[origin](self.files)

    @property
    def origin(self) -> str:
        """"train" for runs classwise trained, "outside" for outside models (``evaluate --model``)."""
        return self.source.origin

    def status(self) -> dict[str, Any]:
        """status.json ({"state": "unknown"} when absent)."""
        path = self.files.status
        data = read_json(path) if path.exists() else {}  # a folder in its place is an error
        if not data:
            return {"state": "unknown"}
        if data.get("state") not in STATES or not isinstance(data.get("trained", False), bool):
            raise ClasswiseError(f"{path} is damaged (state {data.get('state')!r} is none of {', '.join(STATES)}); "
                                 "restore it or make the run again")
        return data

    @property
    def state(self) -> str:
        return str(self.status().get("state", "unknown"))

    @property
    def trained(self) -> bool:
        """Whether training finished (the model is final)."""
        status = self.status()
        return bool(status.get("trained", status.get("state") in TRAINED_STATES))

    def set_status(self, state: str, **extra: Any) -> None:
        """Record the run's state; "complete" means every result is written. Keeps ``trained`` unless given."""
        extra.setdefault("trained", self.trained if self.files.status.is_file() else False)
        write_json(self.files.status, {"state": state, **extra})

    @contextmanager
    def lock(self) -> Iterator["Run"]:
        """Hold the folder's OS lock (re-entrant in this process); a second writer gets one error line."""
        key = self.path.resolve()
        if key in _HELD:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth + 1)
        else:
            _HELD[key] = (_acquire(self.files.lock), 1)
        try:
            yield self
        finally:
            fd, depth = _HELD[key]
            if depth > 1:
                _HELD[key] = (fd, depth - 1)
            else:
                del _HELD[key]
                os.close(fd)

    @contextmanager
    def shared_lock(self) -> Iterator["Run"]:
        """Hold the folder's lock shared: any number of such holders, but no writer (:meth:`lock`) meanwhile.

        For jobs that read the run and write only into their own nested run (a homing
        retrain under ``RUN/homing/class_<j>``, locked itself). Free if this process already writes the run.
        """
        if self.path.resolve() in _HELD:
            yield self
            return
        fd = _acquire(self.files.lock, shared=True)
        try:
            yield self
        finally:
            os.close(fd)

    @contextmanager
    def guarded(self, state: str | None) -> Iterator["Run"]:
        """Set ``state`` (None: keep the status); on failure record "failed" (or "interrupted") with the
        error line, and re-raise."""
        if state is not None:
            self.set_status(state)
        try:
            yield self
        except KeyboardInterrupt as e:
            how = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
            self.set_status("interrupted", error=f"interrupted ({how})")
            raise
        except BaseException as e:
            self.set_status("failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
            raise

    # -- data and model -----------------------------------------------------------------------

    def data(self) -> DataBundle | StreamBundle:
        """The run's dataset, as its config names it (sampled, then without ``data.remove_class``)."""
        return load_run_data(self.config)

    def checkpoint_path(self, name: str = "last") -> Path:
        return self.files.checkpoint(name)

    def checkpoint_names(self) -> list[str]:
        return OurCheckpoints(self.files).names()

    def model(self, checkpoint: str = "last", device: str | torch.device = "cpu") -> nn.Module:
        """The model at ``checkpoint``, in eval mode (an outside run has one model, whatever the name)."""
        return self.source.load(checkpoint, device)

    def head_weight(self, checkpoint: str = "last") -> torch.Tensor | None:
        """The classifier weight (K, D) of ``checkpoint``, if the model has one (:attr:`source`)."""
        return self.source.head_weight(checkpoint)

    def model_digest(self, checkpoint: str = "last") -> dict[str, str]:
        """The evaluated model: checkpoint name and the SHA-256 of its file (outside: of the weights file)."""
        return self.source.digest(checkpoint)

    def save_outside_meta(self, meta: dict[str, Any]) -> None:
        """model.json: what rebuilds the outside model (:func:`classwise.checkpoint.outside_meta`)."""
        OutsideWeights(self.files).save(meta)

    def outside_meta(self) -> dict[str, Any]:
        return OutsideWeights(self.files).record()

    def save_adv(self, attack: str, index: np.ndarray, images: torch.Tensor, facts: dict[str, Any]) -> Path:
        """adv/<attack>.safetensors: adversarial images (N, C, H, W) float32 and their test-set ``index`` (N,)."""
        path = self.files.adv_file(attack)
        _mkdir(path.parent)
        atomic_save({"images": images.float().contiguous(), "index": torch.as_tensor(index, dtype=torch.int64)},
                    path, {"attack": attack, "facts": json.dumps(facts, default=str)})
        return path

    def load_adv(self, attack: str) -> tuple[np.ndarray, torch.Tensor] | None:
        """adv/<attack>.safetensors as saved by :meth:`save_adv`: (index (M,), images (M, C, H, W)); None if absent."""
        path = self.files.adv_file(attack)
        if not path.is_file():
            return None
        tensors, _ = safe_load(path)
        index, images = tensors.get("index"), tensors.get("images")
        if index is None or images is None or index.ndim != 1 or images.ndim != 4 or len(index) != len(images):
            raise ClasswiseError(f"{path} is damaged (index (M,) and images (M, C, H, W) were expected); "
                                 "re-run `classwise evaluate` to rewrite it")
        return index.numpy(), images

    # -- results ------------------------------------------------------------------------------

    def results(self) -> EvalResults | None:
        path = self.files.results
        return EvalResults.load(path) if path.is_file() else None

    def require_results(self) -> EvalResults:
        results = self.results()
        if results is None:
            raise ClasswiseError(f"{self.path} has no per-sample results yet: run `classwise evaluate {self.path}` first")
        return results

    def save_results(self, results: EvalResults, meta: dict[str, Any]) -> dict[str, Any]:
        """Write results.npz and meta.json; return ``meta`` as stored (JSON types), so it is not read back."""
        results.save(self.files.results)
        write_json(self.files.meta, meta)
        return json.loads(json.dumps(meta))

    def stale_results(self) -> str | None:
        """Why the saved results are not of the run's current model (None: they are, or there are none).

        meta.json records the checkpoint and the SHA-256 of its file at evaluation; a checkpoint trained
        further or swapped since has another digest.
        """
        try:
            meta = self.meta() if self.files.results.is_file() else {}
        except ClasswiseError:  # a damaged meta.json is the reader's to report (and the run's to mark failed)
            return None
        checkpoint, sha = meta.get("checkpoint"), meta.get("sha256")
        if not isinstance(checkpoint, str) or not isinstance(sha, str):
            return None
        try:  # a damaged marker or model.json is one error of its own, not a model that is gone
            now = self.model_digest(checkpoint)["sha256"]
        except OSError:
            now = None
        if now == sha:
            return None
        what = "is gone" if now is None else f"is now {now[:12]}... (trained further or replaced)"
        return (f"the results of {self.path} were measured on checkpoint '{checkpoint}' (SHA-256 {sha[:12]}...), "
                f"which {what}")

    def require_fresh_results(self) -> EvalResults:
        """The saved results, when they are of the run's current model; else one error saying what to run."""
        self.refuse_stale()
        return self.require_results()

    def refuse_stale(self) -> None:
        """One error when the saved results are not of the run's current model (:meth:`stale_results`)."""
        stale = self.stale_results()
        if stale:
            raise ClasswiseError(f"{stale}; re-run `classwise evaluate {self.path}` to measure the current model")

    def set_aside(self, why: str) -> Path | None:
        """Move the results and everything made from them (meta, summary, report, figures, tables, adversarial
        images, homing record, compare output) into ``superseded/<time>/`` with ``superseded.json`` saying
        ``why``; they are never shown as the current model's again. Returns the folder (None: no results)."""
        if not self.files.results.is_file():
            return None
        meta = self.meta()
        dest = self.files.superseded / time.strftime("%Y%m%d-%H%M%S")
        while dest.exists():
            dest = dest.with_name(dest.name + "+")
        prefix = dest.relative_to(self.path).as_posix()
        rels = [r for r in sorted(written(self.path)) if r.split("/")[0] in _RESULT_ENTRIES
                and (r.split("/")[0] != "homing" or r.count("/") == 1)]
        moved = move_written(self.path, {r: f"{prefix}/{r}" for r in rels})
        write_json(dest / "superseded.json", {"why": why, "checkpoint": meta.get("checkpoint"),
                                              "sha256": meta.get("sha256"), "moved": moved})
        return dest

    def restore_aside(self, dest: Path) -> None:
        """Undo :meth:`set_aside` into ``dest`` (the model did not change after all): the files move back."""
        moved = read_json(dest / "superseded.json").get("moved", [])
        prefix = dest.relative_to(self.path).as_posix()
        move_written(self.path, {f"{prefix}/{r}": r for r in moved})
        (dest / "superseded.json").unlink()
        for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [dest, dest.parent]:
            if not any(folder.iterdir()):
                folder.rmdir()

    def meta(self) -> dict[str, Any]:
        path = self.files.meta
        meta = read_json(path) if path.exists() else {}
        if not isinstance(meta, dict):
            raise ClasswiseError(f"{path} is damaged (a JSON object was expected); re-run `classwise evaluate` to rewrite it")
        return meta

    def summary(self) -> dict[str, Any]:
        path = self.files.summary
        if not path.is_file():
            raise ClasswiseError(f"{self.path} has no summary.json: run `classwise evaluate {self.path}` first")
        return read_json(path)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.files.metrics)


def _entries(path: Path) -> list[Path]:
    """The folder's entries except our lock file."""
    return [p for p in path.iterdir() if p.name != LOCK] if path.is_dir() else []


def _check_new(path: Path, overwrite: bool, trains: bool = True) -> None:
    """Refuse a path that cannot become a new run (see :meth:`Run.create`).

    The hint names what the command at hand can do: a training command has
    --resume; ``evaluate --model`` has not (its existing run is evaluated as a run).
    """
    if path.is_symlink():
        raise ClasswiseError(f"run folder {path} is a symbolic link: pass the folder it points to")
    if path.exists() and not path.is_dir():
        raise ClasswiseError(f"run folder {path} exists and is not a folder")
    if _entries(path):
        if not overwrite:
            again = "pass --resume to continue it" if trains else f"evaluate it with `classwise evaluate {path}`"
            raise ClasswiseError(f"run folder {path} already exists: {again} or pass --overwrite to replace it")
        _refuse_overwrite(path)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise user_os_error(e, path) or ClasswiseError(f"cannot create {path}: {e.strerror or e}") from e


def _acquire(path: Path, shared: bool = False) -> int:
    """A non-blocking flock on ``path``, exclusive (the writer, named in the file) or ``shared``;
    one error line naming the holder when it is taken."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ClasswiseError(f"{path} is a symbolic link: classwise never writes through links; "
                                 "remove it (it is only a lock file)") from e
        raise ClasswiseError(f"cannot lock {path.parent}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(path, fd)
        os.close(fd)
        raise ClasswiseError(f"{path.parent} is being {holder}; wait for it to finish "
                             "(one writer per run folder)") from None
    if not shared:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} ({' '.join(['classwise', *sys.argv[1:3]])})\n".encode())
    return fd


def _lock_holder(path: Path, fd: int) -> str:
    """Who holds the lock that ``fd`` could not take: shared holders (homing retrains) or the named writer."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"written by {Path(path).read_text().strip() or 'another process'}"
    fcntl.flock(fd, fcntl.LOCK_UN)
    return "read by running homing retrains (`classwise homing --no-collect`)"


def load_run_data(config: RunConfig) -> DataBundle | StreamBundle:
    """The dataset of ``config`` (sampled, then without ``data.remove_class``)."""
    d = config.data
    data = load_data(d.name, d.root, download=d.download, image_size=d.image_size, seed=config.seed,
                     stream=d.stream, workers=d.workers)
    data = data if d.train_examples is None else subsample_train(data, d.train_examples, config.seed)
    if d.remove_class is None:
        return data
    if d.remove_class >= data.num_classes:
        raise ClasswiseError(f"data.remove_class {d.remove_class} is out of range for {data.num_classes} classes")
    return remove_class(data, d.remove_class)


def dataset_label(config: RunConfig) -> str:
    """How results name the data: the registry name, or imagefolder:<folder> (e.g. cifar10-jpeg75)."""
    d = config.data
    return f"imagefolder:{Path(d.root).name}" if d.name == "imagefolder" and d.root else d.name


def version_info() -> dict[str, str | None]:
    """classwise version and the git commit of the source tree, when known."""
    try:
        src = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"classwise": __version__, "git_commit": commit or None}


def load_model_from(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A model of ours from a checkpoint file, or from a run folder (its evaluated checkpoint)."""
    return load_model_and_dataset(path, device)[0]


def load_model_and_dataset(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, str | None]:
    """:func:`load_model_from`, and the dataset the model was trained on (None when not recorded)."""
    path = Path(path)
    if path.is_dir():
        run = Run.open(path)
        return run.model(run.config.eval.checkpoint, device), run.config.data.name
    if not path.is_file():
        raise ClasswiseError(f"{path} does not exist (give a checkpoint file or a run folder)")
    model, meta = load_model_file(path)
    return model.to(device), meta.get("dataset")


__all__ = ["MARKER", "ModelSource", "OurCheckpoints", "OutsideWeights", "Run", "RunFiles", "dataset_label",
           "load_model_and_dataset", "load_model_from", "load_run_data", "version_info"]
