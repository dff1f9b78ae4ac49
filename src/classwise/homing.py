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
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
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
from .pipeline import report_run, train_run
from .report import figures, tables
from .results import EvalResults
from .runs import MARKER, Run
from .train.loop import STATE_FILE

HOMING_DIR = "homing"


def homing_dir(run_dir: Path, j: int) -> Path:
    """Folder of the model retrained without class ``j``: ``RUN/homing/class_<j>``."""
    return Path(run_dir) / HOMING_DIR / f"class_{j}"


def retrain_config(config: RunConfig, j: int) -> RunConfig:
    """The run's config with the training examples of class ``j`` removed (same seed, K outputs)."""
    data = dataclasses.replace(config.data, remove_class=j)
    note = f"Homing retrain: the training examples of class {j} are removed; the model keeps all K outputs."
    return dataclasses.replace(config, data=data, notes=(*config.notes, note))


def retrain_one(run_dir: str, j: int, checkpoint: str, progress: bool = False, threads: int | None = None) -> str:
    """Retrain the run without class ``j`` unless done; returns "skipped", "resumed" or "trained".

    Top-level (picklable) so that :class:`ProcessPoolExecutor` workers can run it.
    A retrain folder without a training checkpoint (a crash before the first
    epoch ended) is started again; it is only ever classwise's own sub-run.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    out = homing_dir(Path(run_dir), j)
    if (out / MARKER).is_file() and Run(out).trained and Run(out).checkpoint_path(checkpoint).is_file():
        return "skipped"
    config = retrain_config(Run.open(run_dir).config, j)
    if (out / "checkpoints" / STATE_FILE).is_file():
        train_run(config, out, resume=True, progress=progress)
        return "resumed"
    train_run(config, out, overwrite=True, progress=progress)
    return "trained"


def retrain_all(run_dir: Path, removed: Sequence[int], checkpoint: str, jobs: int = 1,
                progress: bool = True) -> dict[int, str]:
    """Retrain without each class of ``removed``; ``jobs`` > 1 runs them in spawned processes.

    Each worker uses max(1, cores // jobs) torch threads. A failing retrain
    raises after the others have finished (their folders stay complete).
    """
    if jobs <= 1 or len(removed) <= 1:
        return {j: retrain_one(str(run_dir), j, checkpoint, progress) for j in removed}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {j: pool.submit(retrain_one, str(run_dir), j, checkpoint, False, threads) for j in removed}
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
                  checkpoint: str) -> dict[str, Any]:
    """The JSON-ready record of a homing experiment (matrices as lists, NaN as None)."""
    k = results.num_classes
    m = misclassified_confusion(results.labels, results.adv_pred[attack], k)
    h = homing_counts(results.labels, results.adv_pred[attack], homed, k)
    share = homing_share(m, h)
    per = [{"class": j, "flipped": int(m[:, j].sum()), "homed": int(np.nansum(h[:, j])),
            "dir": f"{HOMING_DIR}/class_{j}"} for j in homed]
    return {
        "attack": attack, "checkpoint": checkpoint, "removed": list(homed), "class_names": results.class_names,
        "misclassified": m.tolist(), "homing": [[None if np.isnan(v) else int(v) for v in row] for row in h],
        "per_removed": per, "flipped": sum(p["flipped"] for p in per), "homed": sum(p["homed"] for p in per),
        "share": None if np.isnan(share) else share,
        "missing_class": "kept: K outputs, no training examples of the removed class",
    }


def write_homing(run_dir: Path, record: dict[str, Any]) -> Path:
    """homing.json, homing.csv, misclassified.csv and homing.png in ``RUN/homing``; returns the JSON path."""
    out, names = run_dir / HOMING_DIR, record["class_names"]
    h = np.array([[np.nan if v is None else v for v in row] for row in record["homing"]], dtype=np.float64)
    m = np.array(record["misclassified"], dtype=np.float64)
    atomic_write(out / "homing.csv", tables.matrix_csv(h, names, names, digits=0))
    atomic_write(out / "misclassified.csv", tables.matrix_csv(m, names, names, digits=0))
    figures.plot_homing(m, h, names, out / "homing.png", title=f"{record['attack']}: homing")
    write_json(out / "homing.json", record)
    return out / "homing.json"


def _removed_classes(results: EvalResults, attack: str, classes: Sequence[int] | None) -> list[int]:
    k = results.num_classes
    if classes is None:
        return confound_classes(results.labels, results.adv_pred[attack], k)
    bad = [j for j in classes if not 0 <= j < k]
    if bad:
        raise ClasswiseError(f"--classes {bad} out of range for {k} classes")
    return sorted(set(classes))


def homing_run(run_dir: str | Path, *, classes: Sequence[int] | None = None, jobs: int = 1,
               attack: str | None = None, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the homing experiment on an evaluated run; write RUN/homing/* and re-render the report.

    Args:
        run_dir: an evaluated run folder (results.npz, meta.json).
        classes: confound classes j to remove (default: every class that received a flip).
        jobs: retrains in parallel processes. attack: one of the run's attacks (default: the protocol attack).

    Returns:
        The homing record (see :func:`homing_record`), also in ``RUN/homing/homing.json``.
    """
    if jobs < 1:
        raise ClasswiseError(f"--jobs must be >= 1, got {jobs}")
    run = Run.open(run_dir)
    with run.lock():
        results, checkpoint = run.require_results(), run.meta().get("checkpoint", "last")
        attack = attack or protocol_attack(results.attacks, results.facts)
        if attack not in results.adv_pred or "config" not in results.facts.get(attack, {}):
            runnable = [a for a in results.attacks if "config" in results.facts.get(a, {})]
            raise ClasswiseError(f"attack {attack!r} cannot be re-run on {run.path} (attacks: {', '.join(runnable)})")
        removed = _removed_classes(results, attack, classes)
        with run.guarded("homing"):
            retrain_all(run.path, removed, checkpoint, jobs, progress)
            record = homing_record(results, attack, _homed(run, removed, results, attack, device), checkpoint)
            write_homing(run.path, record)
        report_run(run.path)
    return record
