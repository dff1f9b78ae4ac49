"""The homing experiment: retrain without a confound class, re-attack its flipped examples.

Paper, section 3.1 (definitions 1-3, figure 3). For an evaluated run and each
confound class j (default: every class that received a flip under the run's
protocol attack), the run's own config is retrained with
``data.remove_class = j`` into ``RUN/homing/class_<j>/``; then the test
examples that the original model flipped into j are attacked again, with the
same attack, on the retrained model. ``H[i, j]`` counts those of true class i
that are now robust (clean-correct and correct under attack): they "home".

How the retrained model handles the missing class: it keeps all K outputs
and the label numbering; class j simply has no training examples, so training
only ever pushes logit j down and the model (almost) never predicts j. The
test set is unchanged (class j's own test images are not used here).

Files: ``RUN/homing/homing.json`` (matrices, share, per removed class),
``homing.csv``, ``misclassified.csv``, ``homing.png``; the run's report is
re-rendered with a homing section. Retrains are resumable: a complete one is
skipped, an interrupted one continues from its last epoch checkpoint.

On a cluster each retrain is its own job, :func:`homing_retrain`
(``classwise homing RUN --classes j --no-collect``, any number at once: they
share the run's lock and each writes only its own sub-run), and
:func:`homing_collect` (``--collect``) assembles the complete ones; together
they give the numbers of the one-shot :func:`homing_run` (docs/homing-cluster.md).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .analysis import confound_classes, flipped_to, homing_counts, homing_share, protocol_attack
from .analysis import misclassified_confusion
from .attacks import build_attack
from .config import AttackConfig, RunConfig, from_dict
from .errors import ClasswiseError
from .evaluate import evaluate, resolve_device
from .fileio import atomic_write, write_json
from .machine import available_cpus, die_with_parent
from .jobs import report_run, train_run
from .report import figures, tables
from .results import EvalResults
from .runs import Run, RunFiles

def homing_dir(run_dir: Path, j: int) -> Path:
    """Folder of the model retrained without class ``j``: ``RUN/homing/class_<j>``."""
    return RunFiles(Path(run_dir)).homing_retrain(j)


def retrain_config(config: RunConfig, j: int, device: str | None = None) -> RunConfig:
    """The run's config with the training examples of class ``j`` removed (same seed, K outputs).

    ``device`` replaces the config's device (it does not change what is trained).
    """
    data = dataclasses.replace(config.data, remove_class=j)
    note = f"Homing retrain: the training examples of class {j} are removed; the model keeps all K outputs."
    return dataclasses.replace(config, data=data, notes=(*config.notes, note), device=device or config.device)


def retrain_done(run_dir: str | Path, j: int, checkpoint: str) -> bool:
    """Whether the retrain without class ``j`` finished and holds ``checkpoint`` (the one homing uses)."""
    out = homing_dir(Path(run_dir), j)
    return RunFiles(out).marker.is_file() and Run(out).trained and Run(out).checkpoint_path(checkpoint).is_file()


def retrain_one(run_dir: str, j: int, checkpoint: str, progress: bool = False, device: str | None = None) -> str:
    """Retrain the run without class ``j`` unless done; returns "skipped", "resumed" or "trained".

    Idempotent, and safe beside other retrains of the same run: it writes only
    ``RUN/homing/class_<j>`` under that folder's own lock (a second process on the
    same class gets one error line). A retrain folder with a training checkpoint
    (interrupted, even by SIGKILL) resumes from it; one without (a crash before the
    first epoch ended) is started again: it is only ever classwise's own sub-run.
    Top-level (picklable) so that :class:`ProcessPoolExecutor` workers can run it.
    """
    if retrain_done(run_dir, j, checkpoint):
        return "skipped"
    out = homing_dir(Path(run_dir), j)
    config = retrain_config(Run.open(run_dir).config, j, device)
    if RunFiles(out).train_state.is_file():
        train_run(config, out, resume=True, progress=progress)
        return "resumed"
    train_run(config, out, overwrite=True, progress=progress)
    return "trained"


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (its own list when set)."""
    count = torch.cuda.device_count()
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in given.split(",") if d.strip()] if given else [str(i) for i in range(count)]
    return ids[:count]


def spread(jobs: int, tasks: int, gpus: Sequence[str], cores: int) -> tuple[list[str | None], int]:
    """Worker slots for ``tasks`` retrains: (one GPU id per worker, or None per worker on CPU; threads each).

    On GPUs: at most one worker per visible device (``min(jobs, tasks, len(gpus))``);
    on CPU: ``min(jobs, tasks)`` workers. Each gets ``max(1, cores // workers)`` torch threads.
    """
    workers = max(1, min(jobs, tasks, len(gpus)) if gpus else min(jobs, tasks))
    slots: list[str | None] = list(gpus[:workers]) if gpus else [None] * workers
    return slots, max(1, cores // workers)


def _start_worker(slots: Any, threads: int, parent: int) -> None:
    """Pool initializer: end with the parent, take one slot (a GPU id: this worker sees only that device), set threads."""
    die_with_parent(parent)
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before CUDA starts in this fresh (spawned) process
    torch.set_num_threads(threads)


def retrain_all(run_dir: Path, removed: Sequence[int], checkpoint: str, jobs: int = 1,
                progress: bool = True, device: str | None = None) -> dict[int, str]:
    """Retrain without each class of ``removed``; ``jobs`` > 1 runs them in spawned processes.

    With CUDA (``device``, else the run's config, resolving to cuda) the workers
    are spread one per visible GPU; on CPU over the usable cores (:func:`spread`).
    A failing retrain raises after the others have finished (their folders stay complete).
    """
    if jobs <= 1 or len(removed) <= 1:
        return {j: retrain_one(str(run_dir), j, checkpoint, progress, device) for j in removed}
    on_gpu = resolve_device(device or Run.open(run_dir).config.device).type == "cuda"
    slots, threads = spread(jobs, len(removed), visible_gpus() if on_gpu else [], available_cpus())
    if on_gpu and len(slots) < jobs:
        warnings.warn(f"--jobs {jobs}: {len(slots)} retrain(s) at a time, one per visible GPU", stacklevel=2)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for slot in slots:
        queue.put(slot)
    with ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_start_worker,
                             initargs=(queue, threads, os.getpid())) as pool:
        worker_device = "cuda" if on_gpu else device
        futures = {j: pool.submit(retrain_one, str(run_dir), j, checkpoint, False, worker_device) for j in removed}
        return {j: f.result() for j, f in futures.items()}


def evaluation_inputs(run: Run, results: EvalResults) -> tuple[Any, Any, Any]:
    """(data, x, y): the run's data and the test examples of ``results`` (by their test-set index).

    x: (N, C, H, W) uint8, y: (N,); checked against the saved labels.
    """
    data = run.data()
    index = torch.as_tensor(results.extras.get("index", np.arange(len(results.labels))))
    x, y = data.test_images(index), data.test_y[index]
    if not np.array_equal(y.numpy(), results.labels):
        raise ClasswiseError(f"cannot rebuild the evaluation set of {run.path}: re-run `classwise evaluate` first")
    return data, x, y


def reattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: np.ndarray, spec: AttackConfig, *,
             batch_size: int = 256, device: str | torch.device | None = None, seed: int = 0) -> np.ndarray:
    """(N,) bool robustness of ``model`` under ``spec`` on the examples in ``mask`` (False elsewhere).

    x: (N, C, H, W), y: (N,), mask: (N,) bool, e.g. :func:`classwise.analysis.flipped_to`
    of the original model for the removed class. Robust = clean-correct and correct under attack.
    """
    robust = np.zeros(mask.shape, dtype=bool)
    idx = np.flatnonzero(mask)
    if idx.size:
        res = evaluate(model, x[idx], y[idx], {spec.name: build_attack(spec, model)}, batch_size=batch_size,
                       device=device, seed=seed, progress=False, zero_grad=False)
        robust[idx] = res.correct(spec.name)
    return robust


def _homed(run: Run, removed: Sequence[int], results: EvalResults, attack: str, device: str | None) -> dict[int, np.ndarray]:
    """Per removed class j, the retrained model's robustness on the examples flipped into j."""
    config, meta = run.config, run.meta()
    data, x, y = evaluation_inputs(run, results)
    dev = resolve_device(device or config.device)
    spec = from_dict(AttackConfig, results.facts[attack]["config"], f"attacks.{attack}")
    out = {}
    for j in removed:
        model = Run.open(homing_dir(run.path, j)).model(meta.get("checkpoint", "last"), dev)
        mask = flipped_to(results.labels, results.adv_pred[attack], j)
        out[j] = reattack(model, x, y, mask, spec, batch_size=config.eval.batch_size, device=dev, seed=config.seed)
    return out


def homing_record(results: EvalResults, attack: str, homed: dict[int, np.ndarray],
                  checkpoint: str, missing: Sequence[int] = ()) -> dict[str, Any]:
    """The JSON-ready record of a homing experiment (matrices as lists, NaN as None).

    ``missing``: requested removed classes whose retrain is not complete (their columns are NaN).
    """
    k = results.num_classes
    m = misclassified_confusion(results.labels, results.adv_pred[attack], k)
    h = homing_counts(results.labels, results.adv_pred[attack], homed, k)
    share = homing_share(m, h)
    tests = np.asarray(results.extras.get("index", np.arange(len(results.labels))))
    per = [{"class": j, "flipped": int(m[:, j].sum()), "homed": int(np.nansum(h[:, j])),
            "dir": RunFiles(Path()).homing_retrain(j).as_posix(),
            "homed_index": tests[homed[j]].tolist()} for j in homed]  # test-set indices (the report's gallery)
    return {
        "attack": attack, "checkpoint": checkpoint, "removed": list(homed), "missing": list(missing),
        "class_names": results.class_names,
        "misclassified": m.tolist(), "homing": [[None if np.isnan(v) else int(v) for v in row] for row in h],
        "per_removed": per, "flipped": sum(p["flipped"] for p in per), "homed": sum(p["homed"] for p in per),
        "share": None if np.isnan(share) else share,
        "missing_class": "kept: K outputs, no training examples of the removed class",
    }


def write_homing(run_dir: Path, record: dict[str, Any]) -> Path:
    """homing.json, homing.csv, misclassified.csv and homing.png in ``RUN/homing``; returns the JSON path."""
    files, names = RunFiles(Path(run_dir)), record["class_names"]
    h = np.array([[np.nan if v is None else v for v in row] for row in record["homing"]], dtype=np.float64)
    m = np.array(record["misclassified"], dtype=np.float64)
    atomic_write(files.homing_csv, tables.matrix_csv(h, names, names, digits=0))
    atomic_write(files.homing_misclassified_csv, tables.matrix_csv(m, names, names, digits=0))
    figures.plot_homing(m, h, names, files.homing_figure, title=f"{record['attack']}: homing")
    write_json(files.homing_json, record)
    return files.homing_json


def _removed_classes(results: EvalResults, attack: str, classes: Sequence[int] | None) -> list[int]:
    k = results.num_classes
    if classes is None:
        return confound_classes(results.labels, results.adv_pred[attack], k)
    bad = [j for j in classes if not 0 <= j < k]
    if bad:
        raise ClasswiseError(f"--classes {bad} out of range for {k} classes (0 to {k - 1})")
    return sorted(set(classes))


def _plan(run: Run, classes: Sequence[int] | None, attack: str | None) -> tuple[EvalResults, str, str, list[int]]:
    """(results, evaluated checkpoint, attack, removed classes) of a homing experiment on ``run``, checked."""
    results, checkpoint = run.require_fresh_results(), run.meta().get("checkpoint", "last")
    attack = attack or protocol_attack(results.attacks, results.facts)
    if attack not in results.adv_pred or "config" not in results.facts.get(attack, {}):
        runnable = [a for a in results.attacks if "config" in results.facts.get(a, {})]
        raise ClasswiseError(f"attack {attack!r} cannot be re-run on {run.path} (attacks: {', '.join(runnable)})")
    return results, checkpoint, attack, _removed_classes(results, attack, classes)


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise ClasswiseError(f"--jobs must be >= 1, got {jobs}")


def homing_retrain(run_dir: str | Path, *, classes: Sequence[int] | None = None, jobs: int = 1,
                   attack: str | None = None, device: str | None = None, progress: bool = True) -> dict[int, str]:
    """Only the retrains (``classwise homing RUN --no-collect``): {class: "skipped"/"resumed"/"trained"}.

    Holds the run's lock *shared*: retrains of other classes may run at the same
    time (other processes or machines seeing the folder), while nothing may rewrite
    the run. Idempotent: run it again after a crash. Arguments as :func:`homing_run`.
    """
    _check_jobs(jobs)
    run = Run.open(run_dir)
    with run.shared_lock():
        _, checkpoint, _, removed = _plan(run, classes, attack)
        return retrain_all(run.path, removed, checkpoint, jobs, progress, device)


def homing_collect(run_dir: str | Path, *, classes: Sequence[int] | None = None, attack: str | None = None,
                   device: str | None = None) -> dict[str, Any]:
    """Assemble the complete retrains (``classwise homing RUN --collect``); retrains nothing.

    Requested classes whose retrain is not complete are listed in ``record["missing"]``;
    one error when none is complete. Writes RUN/homing/* and re-renders the report.
    """
    run = Run.open(run_dir)
    with run.lock():
        results, checkpoint, attack, removed = _plan(run, classes, attack)
        done = [j for j in removed if retrain_done(run.path, j, checkpoint)]
        missing = [j for j in removed if j not in done]
        if missing and not done:
            raise ClasswiseError(f"no homing retrain of {run.path} is complete yet (missing: {_join(missing)}); run "
                                 f"`classwise homing {run.path} --classes {_join(missing, ',')} --no-collect` first")
        with run.guarded("homing"):
            homed = _homed(run, done, results, attack, device)
            record = homing_record(results, attack, homed, checkpoint, missing)
            write_homing(run.path, record)
        report_run(run.path)
    return record


def _join(classes: Sequence[int], sep: str = ", ") -> str:
    return sep.join(map(str, classes))


def missing_states(run_dir: str | Path, classes: Sequence[int]) -> dict[int, str]:
    """Per class, the state of its retrain folder ("not started", "training", "failed", ...)."""
    out = {}
    for j in classes:
        folder = homing_dir(Path(run_dir), j)
        out[j] = Run(folder).state if RunFiles(folder).marker.is_file() else "not started"
    return out


def homing_run(run_dir: str | Path, *, classes: Sequence[int] | None = None, jobs: int = 1,
               attack: str | None = None, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the homing experiment on an evaluated run; write RUN/homing/* and re-render the report.

    The one-shot form of :func:`homing_retrain` then :func:`homing_collect` (same
    numbers), holding the run's lock throughout.

    Args:
        run_dir: an evaluated run folder (results.npz, meta.json).
        classes: confound classes j to remove (default: every class that received a flip).
        jobs: retrains in parallel processes (one per GPU on CUDA). attack: one of the run's attacks
            (default: the protocol attack). device: for the retrains and the re-attacks (default: the config's).

    Returns:
        The homing record (see :func:`homing_record`), also in ``RUN/homing/homing.json``.
    """
    _check_jobs(jobs)
    run = Run.open(run_dir)
    with run.lock():
        _, checkpoint, attack, removed = _plan(run, classes, attack)
        with run.guarded("homing"):
            retrain_all(run.path, removed, checkpoint, jobs, progress, device)
        return homing_collect(run.path, classes=removed, attack=attack, device=device)
