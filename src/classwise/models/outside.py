"""Models classwise did not define: ``torchvision:NAME``, ``timm:NAME`` and ``robustbench:NAME``.

A spec ``KIND:NAME`` builds the architecture with fresh weights (torchvision
``weights=None``, timm ``pretrained=False``, RobustBench's model-zoo class);
trained weights are loaded by :mod:`classwise.checkpoint`. torchvision and timm
networks are wrapped in :class:`Normalized` (input normalisation as buffers,
the network under ``net``), so every model maps [0, 1] images to logits.
RobustBench models carry their own normalisation and are returned as they are.

Such models have no ``head``: :func:`classifier_layer` finds the last
``nn.Linear`` with K outputs, the classifier of figure 4 and the probes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import ClasswiseError
from .base import Normalize

KINDS = ("torchvision", "timm", "robustbench")
ROBUSTBENCH_DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions")


def split_spec(spec: str) -> tuple[str | None, str]:
    """``"timm:resnet18"`` -> ("timm", "resnet18"); a registry name -> (None, name)."""
    kind, sep, name = spec.partition(":")
    if not sep:
        return None, spec
    if kind not in KINDS:
        raise ClasswiseError(f"unknown model kind {kind!r} in {spec!r}; known: {', '.join(KINDS)} "
                             "(or a registry name without a colon)")
    if not name:
        raise ClasswiseError(f"model spec {spec!r} names no model after '{kind}:'")
    return kind, name


class Normalized(nn.Module):
    """``net(normalize(x))``: an outside network on [0, 1] images x (B, C, H, W) -> logits (B, K)."""

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x):
        return self.net(self.normalize(x))


def build_outside(spec: str, num_classes: int, in_channels: int, image_size: int,
                  mean: Sequence[float] | float, std: Sequence[float] | float, **kwargs: Any) -> nn.Module:
    """The architecture of ``spec`` with fresh weights (see the module docstring)."""
    kind, name = split_spec(spec)
    if kind == "robustbench":
        return robustbench_architecture(name, **kwargs)
    net = (_torchvision(name, num_classes, kwargs) if kind == "torchvision"
           else _timm(name, num_classes, in_channels, kwargs))
    return Normalized(Normalize(mean, std, in_channels), net)


def _torchvision(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise ClasswiseError(f"torchvision has no model {name!r} (see torchvision.models.list_models())") from None
    try:
        return builder(weights=None, num_classes=num_classes, **kwargs)
    except TypeError as e:
        if "num_classes" not in str(e):
            raise ValueError(f"torchvision:{name}: {e}") from None
        return builder(weights=None, **kwargs)  # a builder without num_classes


def _timm(name: str, num_classes: int, in_channels: int, kwargs: dict) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ClasswiseError(f"model 'timm:{name}' needs timm: pip install 'classwise[timm]'") from None
    if not timm.is_model(name):
        raise ClasswiseError(f"timm has no model {name!r} (see timm.list_models())")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


# -- RobustBench --------------------------------------------------------------------------------


def robustbench() -> tuple[ModuleType, str]:
    """(the robustbench package, its version), or one clear error.

    torchattacks' wheel ships an old copy of ``robustbench`` without package
    metadata; only an installed ``robustbench`` distribution is accepted. The
    PyPI ``pyautoattack`` (the AutoAttack code RobustBench's ``eval`` imports
    as ``autoattack``) is made importable under that name when the git package
    is absent.
    """
    try:
        version = importlib.metadata.version("robustbench")
    except importlib.metadata.PackageNotFoundError:
        raise ClasswiseError("robustbench: models need the robustbench package: pip install "
                             "'classwise[robustbench]' (a 'robustbench' folder shipped inside torchattacks "
                             "is an old copy and is not used)") from None
    _alias_autoattack()
    try:
        module = importlib.import_module("robustbench")
        importlib.import_module("robustbench.utils")
    except ImportError as e:
        raise ClasswiseError(f"robustbench {version} is installed but cannot be imported ({e}); "
                             "pip install 'classwise[robustbench]' installs what it needs") from None
    _check_distribution(module, version)
    return module, version


def _alias_autoattack() -> None:
    try:
        importlib.import_module("autoattack")
    except ImportError:
        try:
            pkg = importlib.import_module("pyautoattack")
            sys.modules.setdefault("autoattack", pkg)
            sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
        except ImportError:
            pass  # the import of robustbench then names what is missing


def _check_distribution(module: ModuleType, version: str) -> None:
    """Refuse a ``robustbench`` module that is not the file of the installed distribution."""
    dist = importlib.metadata.distribution("robustbench")
    init = next((f for f in dist.files or () if str(f).replace("\\", "/") == "robustbench/__init__.py"), None)
    if init is None or Path(str(dist.locate_file(init))).resolve() != Path(module.__file__ or "").resolve():
        raise ClasswiseError(f"the imported robustbench ({module.__file__}) is not the installed robustbench "
                             f"{version}: an old copy (e.g. torchattacks') shadows it; reinstall robustbench")


def robustbench_dataset(dataset: str) -> str:
    if dataset not in ROBUSTBENCH_DATASETS:
        raise ClasswiseError(f"RobustBench dataset {dataset!r} is not one of {', '.join(ROBUSTBENCH_DATASETS)}")
    return dataset


def robustbench_architecture(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                             model_dir: str | None = None) -> nn.Module:
    """RobustBench's model-zoo architecture of ``name`` with fresh weights (no download)."""
    robustbench()
    return _zoo_entry(name, dataset, threat_model)["model"]()


def _zoo_entry(name: str, dataset: str, threat_model: str) -> dict:
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    zoo = model_dicts[BenchmarkDataset(robustbench_dataset(dataset))][_threat(threat_model, ThreatModel)]
    if name not in zoo:
        raise ClasswiseError(f"RobustBench has no {dataset} {threat_model} model {name!r}")
    return zoo[name]


def _threat(threat_model: str, enum: type) -> object:
    if threat_model not in THREAT_MODELS:
        raise ClasswiseError(f"--threat-model must be one of {', '.join(THREAT_MODELS)}, got {threat_model!r}")
    return enum(threat_model)


def robustbench_file(name: str, dataset: str, threat_model: str, model_dir: str | Path) -> Path:
    """Where RobustBench keeps (or downloads) the weights: ``model_dir/<dataset>/<threat>/<name>.pt``."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def load_robustbench(name: str, dataset: str, threat_model: str, model_dir: str | Path) -> nn.Module:
    """``robustbench.utils.load_model`` (downloads only when the file is not in ``model_dir``).

    Its ``torch.load`` runs with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``: a file
    holding anything but tensors is refused, never unpickled.
    """
    robustbench()
    from robustbench.utils import load_model

    _zoo_entry(name, dataset, threat_model)
    with _weights_only():
        try:
            return load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model).eval()
        except Exception as e:  # RobustBench raises bare errors (download, unpickling, state dict)
            if "weights_only" in str(e) or "Unsupported global" in str(e):
                raise ClasswiseError(f"refusing {robustbench_file(name, dataset, threat_model, model_dir)}: it "
                                     "holds more than tensors (a pickle); classwise never unpickles "
                                     "model files") from None
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            where = robustbench_file(name, dataset, threat_model, model_dir)
            if not where.is_file():  # offline, or a name RobustBench cannot fetch
                raise ClasswiseError(f"no weights for RobustBench's {name} at {where}, and downloading them failed "
                                     f"({why}); put the file there, or pass --model-dir DIR (the file: "
                                     f"DIR/{dataset}/{threat_model}/{name}.pt)") from None
            raise ClasswiseError(f"robustbench could not load {name} ({dataset}, {threat_model}) from "
                                 f"{model_dir}: {why}") from None


@contextmanager
def _weights_only() -> Iterator[None]:
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


# -- the classifier of a model without a head ----------------------------------------------------


def classifier_layer(model: nn.Module, num_classes: int | None = None) -> tuple[str, nn.Linear] | None:
    """(name, layer) of the classifier: ``head`` when it is an ``nn.Linear``, else the last ``nn.Linear``
    (with ``num_classes`` outputs when given); None when there is none."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return "head", head
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)
             and (num_classes is None or m.out_features == num_classes)]
    return found[-1] if found else None
