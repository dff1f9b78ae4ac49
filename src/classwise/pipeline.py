"""The main jobs, each a few calls: train a run, evaluate it, write its report, the demo.

The CLI is a thin layer over these functions; they are the Python API for
whole runs (``classwise.evaluate.evaluate`` is the API for any model). Every
file of a run folder is read and written through :class:`classwise.runs.Run`;
which results an evaluation keeps is :mod:`classwise.identity`'s rule.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .analysis.sanity import flags_to_json, recorded_black_box, sanity_checks
from .analysis import protocol_attack, summarize
from .attacks import Attack, build_attack
from .attacks.cost import evaluation_cost
from .checkpoint import build_model, load_outside, outside_meta
from .config import AttackConfig, RunConfig, load_config, preset_names
from .data import DataBundle, StreamBundle, class_balanced_indices
from .data.streaming import should_stream
from .models import classifier_layer, split_spec
from .models.outside import robustbench
from .errors import ClasswiseError
from .evaluate import EvalOptions, evaluate, resolve_device
from .fileio import read_json, write_json
from .identity import merge_results, with_worst_cases
from .report import ReportContext, write_report
from .results import NOT_ATTACKED, EvalResults
from .runfiles import check_meta, check_metrics
from .runs import Run, dataset_label, load_run_data
from .train.distributed import Dist, distributed
from .train.loop import STATE_FILE, Trainer
from .train.objectives import check_method

HOMING_JSON = "homing/homing.json"  # written by classwise.homing, shown by report_run when present
# Softmax probabilities (figure 5a) are kept when N * K is at most this (80 MB as float32).
PROBS_MAX_VALUES = 20_000_000
# Config keys that --resume may change (they do not change what the run computes).
RESUMABLE = ("train.epochs", "device", "perf.", "train.checkpoint_every", "train.tensorboard", "eval.", "notes",
             "data.workers")


def check_config(config: RunConfig, data: DataBundle | StreamBundle) -> None:
    """Fail before any folder is created: the method's rules, the model and every attack must hold."""
    check_method(config.train, config.model)
    model = build_model(config.model, data)
    for cfg in (config.train.attack, config.train.monitor, *config.eval.attacks):
        build_attack(cfg, model)


def train_run(config: RunConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> Path:
    """Train ``config`` into ``run_dir`` (new, ``overwrite``-n, or ``resume``-d).

    With ``resume``, ``config`` is the run's saved config with the allowed
    changes applied (:func:`resumed_config`). Under ``torchrun`` every process
    calls this (DDP, docs/training.md); only rank 0 touches the folder.
    """
    if resume and overwrite:
        raise ClasswiseError("--resume and --overwrite exclude each other")
    with distributed(resolve_device(config.device)) as dist:
        config = decide_stream(config, dist)
        with dist.main_first():  # rank 0 downloads, if needed
            data = load_run_data(config)
        check_config(config, data)
        run = _open_for_training(config, Path(run_dir), resume, overwrite) if dist.main else Run(Path(run_dir))
        dist.barrier()
        if not dist.main:
            _fit(config, data, run, resume, progress=False, dist=dist)
            return run.path
        with run.lock():
            _fit(config, data, run, resume, progress, dist)
    return run.path


def decide_stream(config: RunConfig, dist: Dist | None = None) -> RunConfig:
    """``config`` with ``data.stream`` of an image folder decided (rank 0's decision on every rank).

    Saved with the run, so a resumed run (or its evaluation) reads the data the same way.
    """
    d, dist = config.data, dist or Dist()
    if d.name != "imagefolder" or d.stream is not None:
        return config
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    stream = dist.gather(should_stream(d.root, d.image_size, None, copies) if dist.main else None)[0]
    return dataclasses.replace(config, data=dataclasses.replace(d, stream=stream))


def _open_for_training(config: RunConfig, path: Path, resume: bool, overwrite: bool) -> Run:
    """The run folder: created (marker, config, version) or reopened for ``resume``."""
    if not resume:
        return Run.create(path, config, overwrite=overwrite)
    run = Run.open(path)
    if not (path / "checkpoints" / STATE_FILE).is_file():
        raise ClasswiseError(f"nothing to resume in {path}: it has no training checkpoint yet; "
                             "start it again with --overwrite")
    with run.lock():
        if config != run.config:
            run.save_config(config)
    return run


def _fit(config: RunConfig, data: DataBundle | StreamBundle, run: Run, resume: bool, progress: bool, dist) -> None:
    """Train to the last epoch; status "training" then "trained" (a finished run resumed to no effect keeps its state).

    Any failure on the way, setting up included, leaves the status "failed" with its error line.
    """
    with run.guarded(None) if dist.main else nullcontext():
        trainer = Trainer(config, data, run.path, progress=progress, dist=dist)
        if resume:
            trainer.restore()
    if resume and trainer.epoch >= config.train.epochs and trainer.resume_point is None:
        return
    if not dist.main:
        trainer.fit()
        return
    with run.guarded("training"):
        run.set_status("training", trained=False)
        trainer.fit()
    run.set_status("trained", trained=True, epochs=trainer.epoch)


def resumed_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The saved config of ``run_dir`` with ``overrides`` that may change on resume (else one error).

    Allowed: more epochs (step schedules), device, perf, checkpointing, TensorBoard,
    eval settings; each change is recorded in the config's notes.
    """
    run = Run.open(run_dir)
    saved = run.config
    config = load_config(run.path / "config.yaml", overrides)
    changed = _changed_keys(saved, config)
    refused = [k for k in changed if not k.startswith(RESUMABLE)]
    if refused:
        raise ClasswiseError(f"--resume cannot change {', '.join(refused)} (it would change the run); "
                             "start a new run with --out, or --overwrite")
    if config.train.epochs != saved.train.epochs:
        _check_more_epochs(saved, config)
    if not changed:
        return saved
    note = "resumed with " + ", ".join(f"{k}={_flat(config)[k]!r} (was {_flat(saved).get(k)!r})" for k in changed)
    return dataclasses.replace(config, notes=(*config.notes, note))


def _check_more_epochs(saved: RunConfig, config: RunConfig) -> None:
    if config.train.epochs < saved.train.epochs:
        raise ClasswiseError(f"--resume cannot lower train.epochs from {saved.train.epochs} to {config.train.epochs}")
    if saved.train.schedule != "step":
        raise ClasswiseError(f"--resume cannot change train.epochs of a '{saved.train.schedule}' learning-rate "
                             "schedule (it is stretched over all epochs); start a new run")


def _flat(config: RunConfig) -> dict[str, object]:
    from .config import to_dict

    def walk(node: object, prefix: str) -> dict[str, object]:
        if not isinstance(node, dict) or prefix in ("model.kwargs.",) or not node:
            return {prefix[:-1]: node}
        return {k: v for key, value in node.items() for k, v in walk(value, f"{prefix}{key}.").items()}

    return walk(to_dict(config), "")


def _changed_keys(a: RunConfig, b: RunConfig) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


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
    attack's adversarial images with their test-set indices to RUN/adv/.

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
            _ = _common_threat(built) if cascade else None  # a cascade over two threat models is refused up front
            adv = _AdvImages() if save_adv else None
            idx = eval_indices(data.test_y, ev.examples, config.seed)
            if not dist.main:
                return _attack_gathered(model, data, idx, built, opts, cascade, adv, dist)
            model_id = run.model_digest(ev.checkpoint)
            with run.guarded("evaluating"):
                started = time.perf_counter(), time.process_time()
                new = _attack_gathered(model, data, idx, built, opts, cascade, adv, dist)
                timing = _timing(new, time.perf_counter() - started[0], time.process_time() - started[1], opts.device,
                                 dist.world, run.meta())
                merged, messages = merge_results(run.results(), run.meta(), new, model_id)
                if adv is not None:
                    adv.save(run, new.facts, merged.facts)
                for message in messages:
                    warnings.warn(message, stacklevel=2)
                merged = with_worst_cases(_headline_probs_only(merged))
                run.save_results(merged, _meta(run, data, ev, merged, model_id, partial) | {"evaluations": timing})
        report_run(run.path)
    return merged


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
                       perf=config.perf, ranks=dist if dist.enabled else None)
    return ev, data, model, built, opts


def _attack_gathered(model: nn.Module, data: DataBundle, idx: np.ndarray, built: list[tuple[AttackConfig, Attack]],
                     opts: EvalOptions, cascade: bool, adv: "_AdvImages | None", dist: Dist) -> EvalResults:
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
    config = load_config(run.path / "config.yaml", overrides)
    refused = [k for k in _changed_keys(run.config, config) if not k.startswith(EVAL_KEYS)]
    if refused:
        raise ClasswiseError(f"--set on evaluate can change only eval.*, device and perf.*, not {', '.join(refused)}")
    return config


class _AdvImages:
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


def eval_indices(labels: torch.Tensor, examples: int | None, seed: int) -> np.ndarray:
    """Test-set indices of the evaluation: all, or a class-balanced sample of about ``examples``."""
    n = len(labels)
    if examples is None or examples >= n:
        return np.arange(n)
    k = int(labels.max()) + 1
    return np.sort(class_balanced_indices(labels, max(1, examples // k), seed=seed).numpy())


def _attack_all(model: nn.Module, data: DataBundle | StreamBundle, idx: np.ndarray, built: list[tuple[AttackConfig, Attack]],
                opts: EvalOptions, cascade: bool, adv: _AdvImages | None = None) -> EvalResults:
    """Per-sample results on the test examples ``idx`` (with ``index`` = idx), keyed by attack config."""
    x, y = data.test_images(idx), data.test_y[idx]  # streamed: only these files are decoded
    opts = opts if adv is None else dataclasses.replace(opts, adv_sink=adv.sink(idx))
    keep_probs = len(y) * data.num_classes <= PROBS_MAX_VALUES
    attacks = {cfg.to_text(): attack for cfg, attack in built}
    if cascade:
        results = evaluate(model, x, y, attacks, class_names=data.class_names, cascade=True, options=opts)
        results = dataclasses.replace(results, adv_pred={"worst": results.adv_pred["worst"]}, adv_probs={},
                                      facts={"worst": results.facts["worst"] | _common_threat(built)})
    else:
        sizes = {text: cfg.examples_per_class for text, (cfg, _) in zip(attacks, built)}
        results = _each_attack(model, x, y, attacks, data, opts, keep_probs, adv, idx, sizes)
    results.extras["index"] = idx
    for text, (cfg, _) in zip(attacks, built):
        if text in results.facts:
            results.facts[text] = {"config": dataclasses.asdict(cfg), **results.facts[text]}
    return results


def _common_threat(built: list[tuple[AttackConfig, Attack]]) -> dict[str, object]:
    """The eps and norm that every attack of a cascade shares (one error otherwise)."""
    threats = {(f["norm"], f["eps"]) for f in (a.facts() for _, a in built)}
    if len(threats) != 1:
        raise ClasswiseError("--cascade needs attacks of one eps and norm (the worst case mixes no threat models)")
    norm, eps = threats.pop()
    return {"norm": norm, "eps": eps}


def _each_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: dict[str, Attack],
                 data: DataBundle | StreamBundle, opts: EvalOptions, keep_probs: bool, adv: _AdvImages | None = None,
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
        if per_class[key] is None:
            continue
        sample = class_balanced_indices(y, per_class[key], seed=opts.seed)
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


def _headline_probs_only(results: EvalResults) -> EvalResults:
    """Keep adversarial probabilities only for the protocol attack (figure 5a needs no others)."""
    head = protocol_attack(results.attacks, results.facts)
    return dataclasses.replace(results, adv_probs={k: v for k, v in results.adv_probs.items() if k == head})


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
             "passes": evaluation_cost(new.extras, new.attacks)}  # forward / input-gradient passes per attack
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
    } | (_outside_facts(run) if run.origin == "outside" else {})


def _outside_facts(run: Run) -> dict:
    """meta.json entries of an outside model: origin, weights file and SHA-256, normalisation, classifier."""
    rec = run.outside_meta()
    keep = ("weights", "sha256", "normalization", "mean", "std", "classifier", "robustbench", "kwargs")
    return {"origin": "outside", "train_method": "outside model (not trained by classwise)",
            "outside": {k: rec[k] for k in keep if k in rec}, "classifier": rec.get("classifier")}


def report_run(run_dir: str | Path) -> dict[str, Path]:
    """(Re-)write summary.json and the report from saved per-sample results; no attacking."""
    run = Run.open(run_dir)
    with run.lock():
        if not (run.path / "results.npz").is_file():
            run.require_results()  # one error saying what to run first; the run is left as it is
        with run.guarded("reporting"):  # a damaged file leaves the run failed, never complete
            results = run.require_results()
            meta = check_meta(run.meta(), run.path / "meta.json", results.num_classes)
            paths = _write_report(run, results, meta)
        run.set_status("complete")
    return paths


def _write_report(run: Run, results: EvalResults, meta: dict) -> dict[str, Path]:
    """summary.json (the model's partial state first, when partial) and the report of ``results``."""
    head = run.head_weight(meta.get("checkpoint", "last"))
    head = None if head is None else head.float().numpy()
    homing = _read_optional(run.path / HOMING_JSON)
    extra = {k: meta[k] for k in ("dataset", "model", "checkpoint", "eps") if k in meta}
    keys = ("attack", "removed", "flipped", "homed", "share")
    extra |= {"homing": {**{k: homing[k] for k in keys}, "missing": homing.get("missing", [])}} if homing else {}
    ran, flags = sanity_checks(results, recorded_black_box(results), results.extras.get("zero_grad"))
    extra |= {"sanity": {"checks": ran, "flags": flags_to_json(flags)}}
    summary = summarize(results, head_weight=head, superclasses=meta.get("superclasses") or None, **extra)
    summary = ({"partial": meta["partial"]} if meta.get("partial") else {}) | summary
    write_json(run.path / "summary.json", summary)
    notes = list(meta.get("notes") or [])
    shown = {k: meta[k] for k in ("dataset", "model", "checkpoint", "eps", "train_method", "classifier")
             if meta.get(k) is not None}
    metrics = check_metrics(run.metrics(), run.path / "metrics.jsonl", results.num_classes)
    return write_report(run.path, ReportContext(
        results, summary, metrics=metrics or None, head_weight=head, meta=shown, notes=notes or None,
        homing=homing, sanity=flags_to_json(flags), checks_run=ran))


def _read_optional(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


@dataclasses.dataclass(frozen=True)
class OutsideModel:
    """A model classwise did not train (``classwise evaluate --model``).

    spec: registry name, ``torchvision:NAME``, ``timm:NAME`` or ``robustbench:NAME``.
    weights: ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` state dict (required but for RobustBench).
    threat_model, model_dir: RobustBench's (``model_dir/<dataset>/<threat>/<name>.pt``).
    mean, std: input normalisation; None: the dataset's; ``normalize=False``: none.
    """

    spec: str
    weights: str | Path | None = None
    threat_model: str = "Linf"
    model_dir: str | Path = "models"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: bool = True


def outside_config(model: OutsideModel, dataset: str, overrides: tuple[str, ...] | list[str] = ()) -> RunConfig:
    """The run config of an outside model: the dataset's preset (eval attacks, eps) or the defaults."""
    base = dataset if dataset in preset_names() else None
    items = [f"data.name={dataset}", f"model.name={model.spec}",
             "notes=['outside model: weights not trained by classwise']", *overrides]
    config = load_config(base, items)
    if split_spec(model.spec)[0] != "robustbench":
        return config
    kwargs = {"dataset": _robustbench_dataset(config, dataset), "threat_model": model.threat_model,
              "model_dir": str(Path(model.model_dir).resolve())} | dict(config.model.kwargs)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, kwargs=kwargs))


def _robustbench_dataset(config: RunConfig, dataset: str) -> str:
    """RobustBench's dataset: ``model.kwargs.dataset``, the dataset's name, or CIFAR-10/100 by class names."""
    from .data.classes import CIFAR10_CLASSES

    if "dataset" in config.model.kwargs:
        return str(config.model.kwargs["dataset"])
    if dataset in ("cifar10", "cifar100", "imagenet"):
        return dataset
    if dataset == "imagefolder" and config.data.root and _folder_classes(config.data.root) == list(CIFAR10_CLASSES):
        return "cifar10"
    raise ClasswiseError(f"which RobustBench dataset is {dataset!r}? say it with --set model.kwargs.dataset=cifar10 "
                         "(or cifar100, imagenet)")


def _folder_classes(root: str) -> list[str]:
    train = Path(root) / "train"
    return sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []


def create_outside_run(model: OutsideModel, config: RunConfig, run_dir: str | Path, *,
                       overwrite: bool = False, attacks: tuple[AttackConfig, ...] | None = None) -> Path:
    """A run folder for an outside model (origin "outside", status trained), ready for :func:`evaluate_run`.

    The model is loaded and checked (weights fit, K outputs) before any folder is
    made; model.json records the spec, the weights file and its SHA-256, the
    normalisation, the classifier used by figure 4 and, for RobustBench, its version.
    """
    config = decide_stream(config)
    data = load_run_data(config)
    mean, std, how = _normalisation(model, data)
    weights = None if model.weights is None else Path(model.weights)
    if weights is None and split_spec(model.spec)[0] != "robustbench":
        raise ClasswiseError(f"--model {model.spec} needs --weights FILE (its trained state dict)")
    extra = {"robustbench": {"version": robustbench()[1], **config.model.kwargs}} \
        if split_spec(model.spec)[0] == "robustbench" else {}
    meta = outside_meta(config.model, data, mean, std, how, weights, **extra)
    net = load_outside(meta, model.weights or model.spec)
    meta = outside_meta(config.model, data, *_loaded_normalisation(net, mean, std, how), weights, **extra)
    meta["classifier"] = _check_outputs(net, data)
    for cfg in attacks or config.eval.attacks:  # every attack builds before the folder is made
        build_attack(cfg, net)
    run = Run.create(run_dir, config, overwrite=overwrite, origin="outside")
    with run.lock():
        run.save_outside_meta(meta)
        run.set_status("trained", trained=True)
    return run.path


def evaluate_outside(model: OutsideModel, config: RunConfig, run_dir: str | Path, *, overwrite: bool = False,
                     attacks: tuple[AttackConfig, ...] | None = None, device: str | None = None,
                     **evaluate: Any) -> tuple[Path, EvalResults]:
    """:func:`create_outside_run`, then :func:`evaluate_run` (``evaluate`` are its keyword arguments).

    Under ``torchrun`` rank 0 alone creates the folder; the others wait for it, then evaluate their shard.
    """
    with distributed(resolve_device(device or config.device)) as dist:
        if dist.main:
            create_outside_run(model, config, run_dir, overwrite=overwrite, attacks=attacks)
        dist.barrier()
        return Path(run_dir), evaluate_run(run_dir, attacks=attacks, device=device, **evaluate)


def _normalisation(model: OutsideModel, data: DataBundle | StreamBundle) -> tuple[tuple | None, tuple | None, str]:
    """(mean, std, where they come from): --mean/--std, the dataset's, none, or RobustBench's own."""
    if split_spec(model.spec)[0] == "robustbench":
        if model.mean is not None or model.std is not None or not model.normalize:
            raise ClasswiseError("RobustBench models normalise their inputs themselves: drop --mean/--std/--no-normalize")
        return None, None, "inside the model (RobustBench)"
    if (model.mean is None) != (model.std is None):
        raise ClasswiseError("give both --mean and --std, or neither")
    if model.mean is not None:
        if not model.normalize:
            raise ClasswiseError("--no-normalize excludes --mean/--std")
        return tuple(model.mean), tuple(model.std), "--mean/--std"
    if not model.normalize:
        return (0.0,), (1.0,), "none"
    return tuple(data.mean), tuple(data.std), f"the dataset's ({data.name})"


def _loaded_normalisation(net: nn.Module, mean, std, how: str) -> tuple[tuple | None, tuple | None, str]:
    """The normalisation the loaded model applies (a classwise state dict brings its own buffers)."""
    norm = getattr(net, "normalize", None)
    if norm is None or mean is None:
        return mean, std, how
    got = tuple(norm.mean.flatten().tolist()), tuple(norm.std.flatten().tolist())
    want = tuple(torch.tensor(mean).expand(len(got[0])).tolist()), tuple(torch.tensor(std).expand(len(got[1])).tolist())
    return (got[0], got[1], how) if np.allclose(got, want) else (got[0], got[1], "the weights file (normalize buffers)")


def _check_outputs(net: nn.Module, data: DataBundle | StreamBundle) -> str | None:
    """One error unless the model maps two test images to (2, K) logits; the classifier's description."""
    from .data.bundle import as_float

    two = data.test_images(torch.arange(min(2, len(data.test_y))))
    with torch.no_grad():
        out = net(as_float(two.clone()))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(two), data.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ClasswiseError(f"the model maps {tuple(two.shape)} images to {got}, not logits for "
                             f"the {data.num_classes} classes of {data.name}")
    found = classifier_layer(net, data.num_classes)
    if found is None:
        return "none found (no nn.Linear with K outputs): no figure 4"
    return "head" if found[0] == "head" and hasattr(net, "features") else \
        f"last nn.Linear '{found[0]}'"


def demo(run_dir: str | Path, *, overrides: tuple[str, ...] = (), overwrite: bool = False,
         progress: bool = True) -> Path:
    """Train the demo preset (robust SmallCNN on mnist5k), evaluate it, write the report."""
    config = load_config("demo", overrides)
    run_dir = train_run(config, run_dir, overwrite=overwrite, progress=progress)
    evaluate_run(run_dir, progress=progress)
    return run_dir


__all__ = ["OutsideModel", "create_outside_run", "demo", "eval_indices", "evaluate_outside", "evaluate_run",
           "outside_config", "report_run", "resumed_config", "train_run"]
