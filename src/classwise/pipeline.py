"""The main jobs, each a few calls: train a run, evaluate it, write its report.

The CLI is a thin layer over these functions; they are the Python API for
whole runs (``classwise.evaluate.evaluate`` is the API for any model).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .analysis import WORST, protocol_attack, suite_worst_case, summarize
from .analysis.sanity import flags_to_json, sanity_checks
from .attacks import attack_default_per_class, attack_is_black_box
from .config import AttackConfig, RunConfig, dump_config, load_config
from .data import DataBundle, class_balanced_indices, load_data, remove_class, subsample_train
from .errors import ClasswiseError
from .evaluate import build_attack, evaluate, evaluate_worst_case, resolve_device
from .fileio import atomic_write
from .report import ReportContext, write_report
from .results import NOT_ATTACKED, EvalResults
from .runs import (
    get_status,
    prepare_run_dir,
    read_json,
    read_jsonl,
    require_run_dir,
    set_status,
    version_info,
    write_json,
)
from .train.checkpoint import load_model, safe_load
from .train.distributed import distributed
from .train.loop import Trainer, build_model


HOMING_JSON = "homing/homing.json"  # written by classwise.homing, shown by report_run when present
# Softmax probabilities (figure 5a) are kept when N * K is at most this (80 MB as float32).
PROBS_MAX_VALUES = 20_000_000


def load_run_data(config: RunConfig) -> DataBundle:
    """The run's dataset, as its config names it (sampled, then without ``data.remove_class``)."""
    d = config.data
    data = load_data(d.name, d.root, download=d.download, image_size=d.image_size, seed=config.seed)
    data = data if d.train_examples is None else subsample_train(data, d.train_examples, config.seed)
    if d.remove_class is None:
        return data
    if d.remove_class >= data.num_classes:
        raise ClasswiseError(f"data.remove_class {d.remove_class} is out of range for {data.num_classes} classes")
    return remove_class(data, d.remove_class)


def check_config(config: RunConfig, data: DataBundle) -> None:
    """Fail before any folder is created: the model and every attack must build."""
    model = build_model(config, data)
    for cfg in (config.train.attack, config.train.monitor, *config.eval.attacks):
        build_attack(cfg, model)


def train_run(config: RunConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> Path:
    """Train ``config`` into ``run_dir`` (new, ``overwrite``-n, or ``resume``-d).

    Under ``torchrun`` every process calls this (DDP, docs/training.md); only
    rank 0 creates the folder and writes files.
    """
    run_dir = Path(run_dir)
    if resume:
        config = load_config(require_run_dir(run_dir) / "config.yaml")
    with distributed(resolve_device(config.device)) as dist:
        with dist.main_first():  # rank 0 downloads, if needed
            data = load_run_data(config)
        check_config(config, data)
        if dist.main:
            run_dir = _open_run_dir(config, run_dir, resume, overwrite)
        dist.barrier()
        trainer = Trainer(config, data, run_dir, progress=progress and dist.main, dist=dist)
        if resume:
            trainer.restore()
        _guarded(run_dir, trainer.fit) if dist.main else trainer.fit()
        if dist.main:
            set_status(run_dir, "trained", epochs=trainer.epoch)
    return run_dir


def _open_run_dir(config: RunConfig, run_dir: Path, resume: bool, overwrite: bool) -> Path:
    """The run folder, created (config and version written) or reopened; status "training"."""
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if not resume:
        atomic_write(run_dir / "config.yaml", dump_config(config))
        write_json(run_dir / "version.json", version_info())
    set_status(run_dir, "training")
    return run_dir


def _guarded(run_dir: Path, work):
    """Run ``work``; on any failure mark the run failed (never complete) and re-raise."""
    try:
        return work()
    except BaseException as e:
        set_status(run_dir, "failed", error=f"{type(e).__name__}: {e}")
        raise


def load_run_model(run_dir: Path, config: RunConfig, data: DataBundle, checkpoint: str = "last",
                   device: str | torch.device = "auto") -> nn.Module:
    """The run's model with weights from ``checkpoints/<checkpoint>.safetensors``."""
    path = Path(run_dir) / "checkpoints" / f"{checkpoint}.safetensors"
    if not path.is_file():
        found = sorted(p.name.split(".")[0] for p in path.parent.glob("*.safetensors") if ".state." not in p.name)
        raise ClasswiseError(f"no checkpoint '{checkpoint}' in {path.parent} (found: {', '.join(found) or 'none'})")
    model = build_model(config, data)
    load_model(model, path)
    return model.to(resolve_device(device)).eval()


def evaluate_run(run_dir: str | Path, *, attacks: tuple[AttackConfig, ...] | None = None,
                 checkpoint: str | None = None, examples: int | None = None, device: str | None = None,
                 cascade: bool = False, progress: bool = True) -> EvalResults:
    """Attack the run's checkpoint, save per-sample results, summary and report.

    Each attack is judged on its own, on its class-balanced sample when its
    config sets ``examples_per_class`` or it has a default one (CW-inf and
    N-Attack: 200 per class, appendix E), the other examples being marked not
    attacked. The per-example worst case over every attack, on the examples all
    of them saw, is added as "worst". ``cascade=True`` computes only a worst
    case, running each attack on the examples still robust (as AutoAttack).
    Attacks of earlier calls on the same examples are kept.
    """
    run_dir = require_run_dir(run_dir)
    config = load_config(run_dir / "config.yaml")
    ev = dataclasses.replace(config.eval, attacks=attacks or config.eval.attacks,
                             checkpoint=checkpoint or config.eval.checkpoint, examples=examples or config.eval.examples)
    data = load_run_data(config)
    dev = resolve_device(device or config.device)
    model = load_run_model(run_dir, config, data, ev.checkpoint, dev)
    built = {attack_key(a): build_attack(a, model) for a in ev.attacks}
    x, y = eval_set(data, ev.examples, config.seed)
    set_status(run_dir, "evaluating")
    kwargs = dict(class_names=data.class_names, batch_size=ev.batch_size, device=dev, seed=config.seed,
                  progress=progress, perf=config.perf)
    sizes = {attack_key(a): a.examples_per_class for a in ev.attacks}
    run = _cascade if cascade else _each_attack
    results = _guarded(run_dir, lambda: run(model, x, y, built, kwargs, data.num_classes, sizes))
    results = _with_worst_case(_merge_previous(run_dir / "results.npz", _headline_probs_only(results)))
    results.save(run_dir / "results.npz")
    write_json(run_dir / "meta.json", _meta(config, data, ev, results, run_dir / "meta.json"))
    report_run(run_dir)
    return results


def attack_key(cfg: AttackConfig) -> str:
    """The results key of an attack: its spec, with "-rR" for R > 1 restarts."""
    return cfg.name if cfg.restarts == 1 else f"{cfg.name}-r{cfg.restarts}"


def _each_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, built: dict, kwargs: dict,
                 num_classes: int, sizes: dict | None = None) -> EvalResults:
    """Every attack on its own: full-set attacks in one pass, sampled attacks on their sample.

    Samples of one seed are nested (a smaller one is part of a larger one).
    """
    per_class = {k: _per_class(k, y, num_classes, (sizes or {}).get(k)) for k in built}
    full = {k: a for k, a in built.items() if per_class[k] is None}
    keep_probs = len(y) * num_classes <= PROBS_MAX_VALUES
    results = evaluate(model, x, y, full, keep_probs=keep_probs, **kwargs)
    for key, attack in built.items():
        if per_class[key] is None:
            continue
        idx = class_balanced_indices(y, per_class[key], seed=kwargs["seed"])
        part = evaluate(model, x[idx], y[idx], {key: attack}, **kwargs)
        pred = np.full(len(y), NOT_ATTACKED, dtype=np.int64)
        pred[idx.numpy()] = part.adv_pred[key]
        results.adv_pred[key] = pred
    return results


def _per_class(key: str, y: torch.Tensor, num_classes: int, requested: int | None = None) -> int | None:
    """The attack's sample per class (``requested``, else its default), if smaller than the evaluation set's."""
    per_class = requested if requested is not None else attack_default_per_class(key.rsplit("-r", 1)[0])
    smallest = int(torch.bincount(y, minlength=num_classes).min())
    return per_class if per_class is not None and per_class < smallest else None


def _cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor, built: dict, kwargs: dict,
             num_classes: int, sizes: dict | None = None) -> EvalResults:
    """Only the worst case, each attack run on the examples still robust."""
    res = evaluate_worst_case(model, x, y, built, **kwargs)
    return dataclasses.replace(res, adv_pred={WORST: res.adv_pred[WORST]}, adv_probs={})


def _with_worst_case(results: EvalResults) -> EvalResults:
    """Add (or refresh) "worst": the per-example worst case over every attack of the run.

    It covers the examples every attack saw (the smallest class-balanced sample;
    :func:`classwise.analysis.suite_worst_case`). With fewer than two attacks an
    existing "worst" (from a cascade) stays.
    """
    pred = suite_worst_case(results)
    if pred is None:
        return results
    results.adv_pred.pop(WORST, None)  # re-added last, after the attacks it summarises
    results.adv_pred[WORST] = pred
    return results


def _headline_probs_only(results: EvalResults) -> EvalResults:
    """Keep adversarial probabilities only for the protocol attack (figure 5a needs no others)."""
    head = protocol_attack(results.attacks)
    return dataclasses.replace(results, adv_probs={k: v for k, v in results.adv_probs.items() if k == head})


def _merge_previous(path: Path, results: EvalResults) -> EvalResults:
    """Keep earlier attacks of the run when they were run on the same examples."""
    if not path.is_file():
        return results
    merged, ok = results.merged_into(EvalResults.load(path))
    if not ok:
        warnings.warn(f"{path} held results on other examples; they are replaced", stacklevel=2)
    return merged


def eval_set(data: DataBundle, examples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All test images, or a class-balanced sample of about ``examples``."""
    if examples is None or examples >= len(data.test_y):
        return data.test_x, data.test_y
    idx = class_balanced_indices(data.test_y, max(1, examples // data.num_classes), seed=seed)
    return data.test_x[idx], data.test_y[idx]


def _meta(config: RunConfig, data: DataBundle, ev, results: EvalResults, previous: Path) -> dict:
    """What the report needs besides per-sample results (attack settings of every kept attack)."""
    attacks = read_json(previous).get("attacks", {}) if previous.is_file() else {}
    attacks = {k: v for k, v in attacks.items() if k in results.adv_pred} | {attack_key(a): dataclasses.asdict(a) for a in ev.attacks}
    eps_values = {a["eps"] for a in attacks.values()}
    return {
        "dataset": dataset_label(config), "model": config.model.name, "checkpoint": ev.checkpoint,
        "eps": eps_values.pop() if len(eps_values) == 1 else {k: a["eps"] for k, a in attacks.items()},
        "attacks": attacks, "class_names": data.class_names, "superclasses": data.superclasses,
        "train_method": config.train.method, "notes": list(config.notes), "examples": ev.examples,
    }


def dataset_label(config: RunConfig) -> str:
    """How results name the data: the registry name, or imagefolder:<folder> (e.g. cifar10-jpeg75)."""
    d = config.data
    return f"imagefolder:{Path(d.root).name}" if d.name == "imagefolder" and d.root else d.name


def report_run(run_dir: str | Path) -> dict[str, Path]:
    """(Re-)write summary.json and the report from saved per-sample results; no attacking."""
    run_dir = require_run_dir(run_dir)
    if not (run_dir / "results.npz").is_file():
        raise ClasswiseError(f"{run_dir} has no per-sample results yet: run `classwise evaluate {run_dir}` first")
    results = EvalResults.load(run_dir / "results.npz")
    meta = read_json(run_dir / "meta.json")
    set_status(run_dir, "reporting")
    head = _head_weight(run_dir / "checkpoints" / f"{meta.get('checkpoint', 'last')}.safetensors")
    homing = read_json(run_dir / HOMING_JSON) if (run_dir / HOMING_JSON).is_file() else None
    extra = {k: meta[k] for k in ("dataset", "model", "checkpoint", "eps", "superclasses")}
    extra |= {"homing": {k: homing[k] for k in ("attack", "removed", "flipped", "homed", "share")}} if homing else {}
    ran, flags = sanity_checks(results, _is_black_box, results.extras.get("zero_grad"))
    extra |= {"sanity": {"checks": ran, "flags": flags_to_json(flags)}}
    summary = summarize(results, head_weight=head, **extra)
    write_json(run_dir / "summary.json", summary)
    paths = write_report(run_dir, ReportContext(
        results, summary, metrics=read_jsonl(run_dir / "metrics.jsonl") or None, head_weight=head,
        meta={k: meta[k] for k in ("dataset", "model", "checkpoint", "eps", "train_method")},
        notes=meta.get("notes") or None, homing=homing, sanity=flags_to_json(flags), checks_run=ran))
    set_status(run_dir, "complete")
    return paths


def _is_black_box(name: str) -> bool:
    """Registry lookup for sanity checks; "worst" and unknown keys count as white-box."""
    try:
        return attack_is_black_box(name.rsplit("-r", 1)[0])
    except ValueError:
        return False


def _head_weight(path: Path) -> np.ndarray | None:
    """The classifier weight (K, D) stored under ``head.weight``, if any."""
    if not path.is_file():
        return None
    tensors, _ = safe_load(path)
    w = tensors.get("head.weight")
    return None if w is None else w.float().numpy()


def demo(run_dir: str | Path, *, overrides: tuple[str, ...] = (), overwrite: bool = False,
         progress: bool = True) -> Path:
    """Train the demo preset (robust SmallCNN on mnist5k), evaluate it, write the report."""
    config = load_config("demo", overrides)
    run_dir = train_run(config, run_dir, overwrite=overwrite, progress=progress)
    evaluate_run(run_dir, progress=progress)
    return run_dir


__all__ = ["demo", "evaluate_run", "get_status", "load_run_model", "report_run", "train_run"]
