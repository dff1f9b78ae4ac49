"""The evaluation job: attack a run's model, merge with its earlier results, save, report."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..attacks import Attack, build_attack
from ..config import AttackConfig, RunConfig, load_run_config
from ..data import DataBundle, StreamBundle
from ..errors import ClasswiseError
from ..evaluate import EvalOptions, resolve_device
from ..identity import merge_results, with_worst_cases
from ..progress import phase_line
from ..results import EvalResults, evaluation_cost
from ..runfiles import check_meta, check_metrics
from ..runs import Run, dataset_label
from ..train.distributed import Dist, distributed
from .attacking import (
    AdvImages,
    attack_gathered,
    common_threat,
    eval_indices,
    headline_probs_only,
    changed_examples,
)
from .report import write_run_report
from .resume import changed_keys


def evaluate_run(run_dir: str | Path, *, attacks: tuple[AttackConfig, ...] | None = None,
                 checkpoint: str | None = None, examples: int | None = None, device: str | None = None,
                 cascade: bool = False, progress: bool = True, allow_partial: bool = False,
                 batch_size: int | None = None, overrides: tuple[str, ...] | list[str] = (),
                 save_adv: bool = False) -> EvalResults:
    """Attack the run's checkpoint, save per-sample results, summary and report.

    Each attack is judged on its own; CW-inf and N-Attack run on their default
    class-balanced sample (200 per class, appendix E), the other examples being
    marked not attacked; an attack config's ``examples_per_class`` sets its
    own sample (samples of one seed are nested). Results are keyed by what was measured (attack
    identity and examples, :func:`classwise.identity.merge_results`): earlier
    results of the same model are kept, an identical re-run replaces its
    earlier self, and "worst" is the per-example worst case over every attack
    of one threat model (norm, eps), on the examples all of them saw. ``cascade=True`` computes only that worst case,
    running each attack on the examples still robust (as AutoAttack).
    ``allow_partial`` evaluates a model whose training did not finish (said so
    in summary.json and the report). ``overrides`` (``--set``) may change
    eval.*, device and perf.* for this evaluation. ``save_adv`` writes each
    attack's adversarial images with their test-set indices to RUN/adv/; without
    it each attack keeps ``eval.save_adv_per_class`` of them per class there (the
    report's galleries; :class:`~classwise.jobs.attacking.AdvImages`).

    Under ``torchrun`` every process calls this (docs/scale.md, "Sharded
    evaluation"): each attacks its share of the batches, rank 0 gathers them,
    merges, writes and reports; the other ranks only read the run (config,
    checkpoint, data), never lock or write it, and return this evaluation's
    gathered results (not merged with earlier ones).
    """
    run = Run.open(run_dir)
    config = _eval_config(run, overrides)
    with distributed(resolve_device(device or config.device)) as dist:
        with run.lock() if dist.main else nullcontext():
            partial = _check_trained(run, allow_partial)
            ev, data, model, built, opts = _eval_setup(run, config, dist, attacks=attacks, checkpoint=checkpoint,
                                                       examples=examples, device=device, batch_size=batch_size,
                                                       progress=progress)
            _ = common_threat(built) if cascade else None  # a cascade over two threat models is refused up front
            adv = _adv_images(save_adv, ev.save_adv_per_class, data.test_y, config.seed)
            idx = eval_indices(data.test_y, ev.examples, config.seed)
            attack = functools.partial(attack_gathered, model, data, idx, built, opts, cascade, adv, dist)
            if not dist.main:
                return attack()
            merged, meta = _attack_and_save(run, attack, data, ev, partial, adv, (opts.device, dist.world))
            phase_line(f"report: writing summary.json, tables, figures and {run.files.report_html.name}", progress)
            write_run_report(run, meta)
    return merged


def _adv_images(save_all: bool, per_class: int, labels: torch.Tensor, seed: int) -> AdvImages | None:
    """What the evaluation keeps of its adversarial images: all (``--save-adv``), ``per_class`` per class, or none."""
    if save_all:
        return AdvImages()
    return AdvImages(per_class, np.asarray(labels), seed) if per_class > 0 else None


def _attack_and_save(run: Run, attack: Callable[[], EvalResults], data: DataBundle | StreamBundle, ev,
                     partial: str | None, adv: AdvImages | None, where: tuple[torch.device, int]
                     ) -> tuple[EvalResults, dict]:
    """Rank 0, status "evaluating": ``attack()``, merge with the run's earlier results, save them.

    Returns the merged results and meta.json as written; meta.json is read once, here
    (its earlier evaluations and the identities of the kept results). ``where``: (device, processes).
    """
    model_id = run.model_digest(ev.checkpoint)
    with run.guarded("evaluating"):
        _set_aside_stale(run, model_id)
        _check_earlier(run, data.num_classes)
        started = time.perf_counter(), time.process_time()
        new = attack()
        _set_aside_other_examples(run, data, new)
        old_meta = run.meta()
        timing = _timing(new, time.perf_counter() - started[0], time.process_time() - started[1], *where, old_meta)
        merged, messages = merge_results(run.results(), old_meta, new, model_id)
        if adv is not None:
            adv.save(run, new.facts, merged.facts, new)
        for message in messages:
            warnings.warn(message, stacklevel=3)  # at evaluate_run's caller
        merged = with_worst_cases(headline_probs_only(merged))
        meta = run.save_results(merged, _meta(run, data, ev, merged, model_id, partial) | {"evaluations": timing})
    return merged, meta


def _set_aside_stale(run: Run, model_id: dict[str, str]) -> None:
    """Move the run's results to ``superseded/`` when its checkpoint's file changed since they were measured
    (trained further, swapped; a warning says so): results of two models are never merged."""
    meta = run.meta() if run.files.results.is_file() else {}
    if meta.get("checkpoint") == model_id["checkpoint"] and meta.get("sha256") not in (None, model_id["sha256"]):
        _set_aside(run, f"checkpoint '{model_id['checkpoint']}' changed since the last evaluation (trained further "
                        "or replaced)")


def _check_earlier(run: Run, num_classes: int) -> None:
    """One error, before any attacking, when a file this evaluation merges with or reports from is damaged
    (results.npz, a meta.json that does not describe them, metrics.jsonl)."""
    old = run.results()
    if old is not None:
        check_meta(run.meta(), run.files.meta, old.num_classes, old.attacks)
    check_metrics(run.metrics(), run.files.metrics, num_classes)


def _set_aside_other_examples(run: Run, data: DataBundle | StreamBundle, new: EvalResults) -> None:
    """Move the run's results to ``superseded/`` when the test examples they were measured on changed
    (labels, or images the new evaluation saw too: ``extras["example_hash"]``); never merged with ``new``."""
    old = run.results()
    changed = 0 if old is None else changed_examples(old, data, new)
    if changed:
        _set_aside(run, f"the test set changed since the last evaluation ({changed} of the evaluated examples "
                        "have other images or labels now)")


def _set_aside(run: Run, why: str) -> None:
    moved = run.set_aside(why)
    warnings.warn(f"{why}: the earlier results are moved to {moved}; this evaluation starts afresh", stacklevel=5)


def _eval_setup(run: Run, config: RunConfig, dist: Dist, *, attacks: tuple[AttackConfig, ...] | None,
                checkpoint: str | None, examples: int | None, device: str | None, batch_size: int | None,
                progress: bool) -> tuple:
    """(eval config, data, model on this rank's device, built attacks, EvalOptions) of one evaluation.

    Rank 0 marks the run failed if the checkpoint is damaged; a bad attack leaves the run untouched.
    """
    ev = dataclasses.replace(config.eval, attacks=attacks or config.eval.attacks,
                             checkpoint=checkpoint or config.eval.checkpoint,
                             examples=examples or config.eval.examples, batch_size=batch_size or config.eval.batch_size)
    with dist.main_first():  # rank 0 downloads, if needed
        data = run.data()
    dev = dist.device(resolve_device(device or config.device))
    with run.guarded(None) if dist.main else nullcontext():  # a damaged checkpoint leaves the run failed
        model = run.model(ev.checkpoint, dev)
    built = [(cfg, build_attack(cfg, model)) for cfg in ev.attacks]
    _check_surrogates(built, data.name)
    opts = EvalOptions(batch_size=ev.batch_size, device=dev, seed=config.seed, progress=progress and dist.main,
                       perf=config.perf, ranks=dist if dist.enabled else None,
                       state_dir=None if dist.enabled else run.files.evaluation_state, state_every_s=state_every_s())
    return ev, data, model, built, opts


def state_every_s() -> float:
    """Seconds between saves of an evaluation's finished batches: 60, or ``CLASSWISE_EVAL_STATE_EVERY_S``."""
    return float(os.environ.get("CLASSWISE_EVAL_STATE_EVERY_S", "60"))


def _check_surrogates(built: list[tuple[AttackConfig, Attack]], dataset: str) -> None:
    """Refuse a transfer surrogate trained on another dataset (its recorded ``trained_on`` fact)."""
    for cfg, attack in built:
        trained_on = attack.facts().get("trained_on")
        if trained_on not in (None, dataset):
            raise ClasswiseError(f"{cfg.name}: the surrogate was trained on {trained_on}, this run's data is "
                                 f"{dataset}; use a surrogate trained on the same dataset")


def _check_trained(run: Run, allow_partial: bool) -> str | None:
    """None for a finished model; the partial-model note with ``allow_partial``; else one error."""
    if run.trained:
        return None
    status = run.status()
    what = f"status '{status.get('state')}'" + (f": {status['error']}" if status.get("error") else "")
    if not allow_partial:
        raise ClasswiseError(f"{run.path} has not finished training ({what}); finish it with `classwise train "
                             f"--resume --out {run.path}`, or pass --allow-partial to evaluate it as it is")
    epochs = len(run.metrics())
    return f"PARTIAL: the model is from an unfinished run ({what}, {epochs} of {run.config.train.epochs} epochs)"


EVAL_KEYS = ("eval.", "device", "perf.", "data.workers")  # what --set may change when an existing run is evaluated


def _eval_config(run: Run, overrides: tuple[str, ...] | list[str]) -> RunConfig:
    """The run's config with ``--set`` overrides of eval.*, device and perf.* (anything else: one error)."""
    if not overrides:
        return run.config
    config = load_run_config(run.files.config, overrides)
    refused = [k for k in changed_keys(run.config, config) if not k.startswith(EVAL_KEYS)]
    if refused:
        raise ClasswiseError(f"--set on evaluate can change only eval.*, device and perf.*, not {', '.join(refused)}")
    return config


def _timing(new: EvalResults, seconds: float, cpu_seconds: float, device: torch.device, processes: int,
            old_meta: dict | None) -> list[dict]:
    """meta.json "evaluations": earlier calls' entries, then this one's attacks, examples, wall and CPU seconds, device, threads.

    CPU seconds are rank 0's process's (all its threads); on a machine shared with
    other work they say what the evaluation costs, where wall seconds say how long
    it waited too. ``processes``: torchrun ranks that shared the work.
    """
    earlier = (old_meta or {}).get("evaluations", [])
    entry = {"attacks": list(new.attacks), "examples": int(new.labels.shape[0]), "seconds": round(seconds, 2),
             "cpu_seconds": round(cpu_seconds, 2),
             "device": str(device), "threads": torch.get_num_threads(), "processes": processes,
             "passes": evaluation_cost(new)}  # forward / input-gradient passes per attack
    return [*(earlier if isinstance(earlier, list) else []), entry]


def _meta(run: Run, data: DataBundle | StreamBundle, ev, results: EvalResults, model_id: dict, partial: str | None) -> dict:
    """What the report needs besides per-sample results: the model and every kept attack's identity."""
    config = run.config
    attacks = {k: results.facts.get(k, {}) for k in results.attacks}
    eps_values = {f.get("eps") for f in attacks.values()}
    meta = {"partial": partial} if partial else {}
    return meta | {
        "dataset": dataset_label(config), "model": config.model.name, **model_id,
        "eps": eps_values.pop() if len(eps_values) == 1 else {k: f.get("eps") for k, f in attacks.items()},
        "attacks": attacks, "class_names": data.class_names, "superclasses": data.superclasses,
        "train_method": config.train.method, "notes": list(config.notes), "examples": ev.examples,
    } | run.source.describe()
