"""Outside models (``classwise evaluate --model``): a run folder for weights classwise did not train.

The folder holds model.json instead of checkpoints (:class:`classwise.runs.OutsideWeights`);
everything after (evaluate, report, compare, probes) is the same as for our runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..attacks import build_attack
from ..checkpoint import load_outside, outside_meta
from ..config import AttackConfig, RunConfig, load_config, preset_names
from ..data import DataBundle, StreamBundle
from ..errors import ClasswiseError
from ..evaluate import resolve_device
from ..models import classifier_layer, split_spec
from ..models.outside import library_normalization, robustbench, spec_weights
from ..results import EvalResults
from ..runs import OutsideWeights, Run, load_run_data
from ..train.distributed import distributed
from .evaluate import evaluate_run
from .train import decide_stream


@dataclasses.dataclass(frozen=True)
class OutsideModel:
    """A model classwise did not train (``classwise evaluate --model``).

    spec: registry name, ``torchvision:NAME``, ``timm:NAME`` or ``robustbench:NAME``; ``@pretrained``
        (torchvision also ``@weights=ENUM``) takes the library's weights (:mod:`classwise.models.outside`).
    weights: ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` state dict (required but for RobustBench
        and library weights).
    threat_model, model_dir: RobustBench's (``model_dir/<dataset>/<threat>/<name>.pt``).
    mean, std: input normalisation; None: the library's for its pretrained weights, else the dataset's;
        ``normalize=False``: none.
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
    from ..data.classes import CIFAR10_CLASSES

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
    _check_weights_given(model)
    extra = {"robustbench": {"version": robustbench()[1], **config.model.kwargs}} \
        if split_spec(model.spec)[0] == "robustbench" else {}
    meta = outside_meta(config.model, data, mean, std, how, weights, **extra)
    net = load_outside(meta, model.weights or model.spec)
    meta = outside_meta(config.model, data, *_loaded_normalisation(net, mean, std, how), weights, **extra)
    meta["classifier"] = _check_outputs(net, data)
    for cfg in attacks or config.eval.attacks:  # every attack builds before the folder is made
        build_attack(cfg, net)
    run = Run.create(run_dir, config, overwrite=overwrite, origin=OutsideWeights.origin)
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


def _check_weights_given(model: OutsideModel) -> None:
    """A weights file, or the library's weights (``@pretrained``), exactly one; RobustBench brings its own."""
    library = spec_weights(model.spec) is not None
    if model.weights is None and not library and split_spec(model.spec)[0] != "robustbench":
        hint = ", or @pretrained for the library's weights" if split_spec(model.spec)[0] else ""
        raise ClasswiseError(f"--model {model.spec} needs --weights FILE (its trained state dict){hint}")
    if model.weights is not None and library:
        raise ClasswiseError(f"--model {model.spec} takes the library's weights: drop --weights, or drop the "
                             f"'@{model.spec.partition('@')[2]}' to load {model.weights}")


def _normalisation(model: OutsideModel, data: DataBundle | StreamBundle) -> tuple[tuple | None, tuple | None, str]:
    """(mean, std, where they come from): --mean/--std, the library's for its pretrained weights, the dataset's,
    none, or RobustBench's own."""
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
    library = library_normalization(model.spec)
    if library is not None:
        return library[0], library[1], "the pretrained weights' (the library's)"
    return tuple(data.mean), tuple(data.std), f"the dataset's ({data.name})"


def _loaded_normalisation(net: nn.Module, mean, std, how: str) -> tuple[tuple | None, tuple | None, str]:
    """The normalisation the loaded model applies (a classwise state dict brings its own buffers)."""
    norm = getattr(net, "normalize", None)
    if norm is None or mean is None:
        return mean, std, how
    got = tuple(norm.mean.flatten().tolist()), tuple(norm.std.flatten().tolist())
    want = tuple(torch.tensor(mean).expand(len(got[0])).tolist()), tuple(torch.tensor(std).expand(len(got[1])).tolist())
    if np.allclose(got, want):
        return got[0], got[1], how
    if how == "--mean/--std":
        raise ClasswiseError(f"--mean/--std {list(want[0])}/{list(want[1])} differ from the normalisation stored "
                             f"in the weights file ({list(got[0])}/{list(got[1])}), which the model applies; "
                             "drop --mean/--std to use the stored one")
    return got[0], got[1], "the weights file (normalize buffers)"


def _check_outputs(net: nn.Module, data: DataBundle | StreamBundle) -> str | None:
    """One error unless the model maps two test images to (2, K) logits; the classifier's description."""
    from ..data.bundle import as_float

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
