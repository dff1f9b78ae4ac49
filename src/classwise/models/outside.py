"""Models classwise did not define: ``torchvision:NAME``, ``timm:NAME`` and ``robustbench:NAME``.

A spec ``KIND:NAME`` builds the architecture with fresh weights (torchvision
``weights=None``, timm ``pretrained=False``, RobustBench's model-zoo class);
trained weights are loaded by :mod:`classwise.checkpoint`. The spec grammar,
parsed here alone (:func:`parse_spec`), is ``KIND:NAME[@pretrained]`` and, for
torchvision, ``torchvision:NAME@weights=ENUM``: the library's own pretrained
weights (a timm tag in NAME, ``timm:resnet18.a1_in1k@pretrained``, picks which;
``@pretrained`` is torchvision's ``weights="DEFAULT"``), read from its cache or
downloaded by it; they keep the library's classifier, so K must match.
torchvision and timm networks are wrapped in :class:`Normalized` (input
normalisation as buffers, the network under ``net``), so every model maps
[0, 1] images to logits.
RobustBench models carry their own normalisation and are returned as they are.

Such models have no ``head``: :func:`classifier_layer` finds the last
``nn.Linear`` with K outputs, the classifier of figure 4 and the probes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import ClasswiseError, did_you_mean
from .base import Normalize

KINDS = ("torchvision", "timm", "robustbench")
PRETRAINED = "pretrained"  # KIND:NAME@pretrained: the library's default weights
ROBUSTBENCH_DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions")


def split_spec(spec: str) -> tuple[str | None, str]:
    """``"timm:resnet18@pretrained"`` -> ("timm", "resnet18"); a registry name -> (None, name)."""
    kind, name, _ = parse_spec(spec)
    return kind, name


def spec_weights(spec: str) -> str | None:
    """The library weights a spec asks for: ``"DEFAULT"`` for ``@pretrained``, the enum of ``@weights=``, else None."""
    return parse_spec(spec)[2]


def parse_spec(spec: str) -> tuple[str | None, str, str | None]:
    """(kind, name, library weights) of ``KIND:NAME[@pretrained | @weights=ENUM]`` (module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        return None, spec, None
    if kind not in KINDS:
        raise ClasswiseError(f"unknown model kind {kind!r} in {spec!r}; known: {', '.join(KINDS)} "
                             "(or a registry name without a colon)")
    name, at, suffix = rest.partition("@")
    if not name:
        raise ClasswiseError(f"model spec {spec!r} names no model after '{kind}:'")
    if not at:
        return kind, name, None
    key, eq, value = suffix.partition("=")
    if kind != "robustbench" and key == PRETRAINED and not eq:
        return kind, name, "DEFAULT"
    if kind == "torchvision" and key == "weights" and value and "@" not in value:
        return kind, name, value
    allowed = {"torchvision": "@pretrained or @weights=ENUM", "timm": "@pretrained (a tag in NAME picks which)",
               "robustbench": "nothing: RobustBench models always load their weights"}[kind]
    raise ClasswiseError(f"model spec {spec!r}: '@{suffix}' is not understood; {kind}: takes {allowed}")


class Normalized(nn.Module):
    """``net(normalize(x))``: an outside network on [0, 1] images x (B, C, H, W) -> logits (B, K)."""

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x):
        return self.net(self.normalize(x))


def normalized(net: nn.Module, mean: Sequence[float] | float, std: Sequence[float] | float,
               in_channels: int) -> Normalized:
    """``net`` behind ``(x - mean) / std`` (buffers): what ``--mean/--std`` and ``evaluate(mean=, std=)`` apply."""
    return Normalized(Normalize(mean, std, in_channels), net)


def build_outside(spec: str, num_classes: int, in_channels: int, image_size: int,
                  mean: Sequence[float] | float, std: Sequence[float] | float, **kwargs: Any) -> nn.Module:
    """The architecture of ``spec``, with fresh weights or the library's (see the module docstring)."""
    kind, name, weights = parse_spec(spec)
    if kind == "robustbench":
        return robustbench_architecture(name, **kwargs)
    if weights is not None:
        net = (_torchvision_pretrained(spec, name, weights, kwargs) if kind == "torchvision"
               else _timm_pretrained(name, in_channels, kwargs))
        _check_classes(spec, net, num_classes)
    else:
        net = (_torchvision(name, num_classes, kwargs) if kind == "torchvision"
               else _timm(name, num_classes, in_channels, kwargs))
    return normalized(net, mean, std, in_channels)


def _torchvision_builder(name: str) -> Any:
    import torchvision.models as tvm

    try:
        return tvm.get_model_builder(name)
    except ValueError:
        raise ClasswiseError(f"torchvision has no model {name!r}{did_you_mean(name, tvm.list_models())} "
                             "(see torchvision.models.list_models())") from None


def _torchvision(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    builder = _torchvision_builder(name)
    try:
        return builder(weights=None, num_classes=num_classes, **kwargs)
    except TypeError as e:
        if "num_classes" not in str(e):
            raise ValueError(f"torchvision:{name}: {e}") from None
        return builder(weights=None, **kwargs)  # a builder without num_classes


def _torchvision_pretrained(spec: str, name: str, weights: str, kwargs: dict) -> nn.Module:
    """torchvision's ``NAME(weights=ENUM)``, from torch's hub cache (downloaded there when absent and online)."""
    import torch.hub
    import torchvision.models as tvm

    builder = _torchvision_builder(name)
    try:
        choices = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        raise ClasswiseError(f"torchvision:{name} has no pretrained weights") from None
    names = ["DEFAULT", *(w.name for w in choices)]
    if weights not in names:
        raise ClasswiseError(f"torchvision:{name} has no weights {weights!r}{did_you_mean(weights, names)}; "
                             f"known: {', '.join(names)}")
    chosen = choices[weights]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:
        return builder(weights=chosen, **kwargs)
    except OSError as e:  # offline: urllib's URLError
        raise ClasswiseError(f"{spec}: {chosen} is not in torch's cache ({cached}) "
                             f"and could not be downloaded ({_first_line(e)}); put {chosen.url} there, or give "
                             "--weights FILE") from None


def _timm_module(name: str) -> Any:
    try:
        return _quiet_import("timm")
    except ImportError:
        raise ClasswiseError(f"model 'timm:{name}' needs timm: pip install 'classwise[timm]'") from None


def _timm_known(timm: Any, name: str) -> None:
    if not timm.is_model(name):
        arch = name.partition(".")[0]
        raise ClasswiseError(f"timm has no model {name!r}{did_you_mean(arch, timm.list_models())} "
                             "(see timm.list_models())")


def _timm(name: str, num_classes: int, in_channels: int, kwargs: dict) -> nn.Module:
    timm = _timm_module(name)
    _timm_known(timm, name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


def _timm_pretrained(name: str, in_channels: int, kwargs: dict) -> nn.Module:
    """timm's ``create_model(NAME, pretrained=True)``: the tag in NAME (or timm's default for the architecture)."""
    timm = _timm_module(name)
    _timm_known(timm, name)
    tags = timm.list_pretrained(f"{name.partition('.')[0]}.*")
    if "." in name and name not in tags:
        raise ClasswiseError(f"timm has no pretrained weights {name!r}{did_you_mean(name, tags)}; "
                             f"known: {', '.join(tags) or 'none'}")
    try:
        return timm.create_model(name, pretrained=True, in_chans=in_channels, **kwargs)
    except (OSError, RuntimeError) as e:  # offline, no cached file, or no hub client timm can use
        raise ClasswiseError(f"timm:{name}@pretrained: timm could not load the weights from its cache or the "
                             f"network ({_first_line(e)}){_hub_hint(timm, e)}; give --weights FILE instead") from None


def _hub_hint(timm: Any, e: BaseException) -> str:
    """Why timm says huggingface_hub is "not installed" when it is: timm cannot import what it needs from it."""
    try:
        hub = importlib.metadata.version("huggingface_hub")
    except importlib.metadata.PackageNotFoundError:
        return ""
    return (f" (huggingface_hub {hub} is installed, but timm {timm.__version__} cannot import it: "
            "a newer timm or an older huggingface_hub)") if "huggingface_hub" in str(e) else ""


def library_normalization(spec: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) the library's pretrained weights of ``spec`` were trained with; None without library weights.

    torchvision: the weights' ``transforms()``; timm: the tag's ``pretrained_cfg`` (ViTs use 0.5, not ImageNet's).
    """
    kind, name, weights = parse_spec(spec)
    if weights is None or kind not in ("torchvision", "timm"):
        return None
    if kind == "torchvision":
        import torchvision.models as tvm

        _torchvision_builder(name)
        try:
            preprocess = tvm.get_model_weights(name)[weights].transforms()
        except (ValueError, KeyError):
            return None  # unknown weights: building the model says so
        return tuple(preprocess.mean), tuple(preprocess.std)
    timm = _timm_module(name)
    _timm_known(timm, name)
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        return None
    return (tuple(cfg.mean), tuple(cfg.std)) if cfg is not None else None


def _check_classes(spec: str, net: nn.Module, num_classes: int) -> None:
    """One error when pretrained weights classify into another number of classes than the dataset's."""
    found = getattr(net, "num_classes", None)
    layer = classifier_layer(net)
    k = found if isinstance(found, int) else (layer[1].out_features if layer else None)
    if k is not None and k != num_classes:
        raise ClasswiseError(f"{spec} classifies into {k} classes, the dataset has {num_classes}: pretrained "
                             "weights keep their classifier (fine-tune them first and give --weights FILE)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# Third-party warnings on import, not about the user's work: torch's while timm is imported, setuptools' while
# robustbench 1.1.1 imports pkg_resources. Each is matched by its message alone.
IMPORT_NOISE = ((FutureWarning, r"`torch\.jit\.interface` is deprecated"),
                (UserWarning, r"pkg_resources is deprecated as an API"))


def _quiet_import(module: str) -> ModuleType:
    """``import module`` without the :data:`IMPORT_NOISE` warnings (every other warning is shown as usual)."""
    with warnings.catch_warnings():
        for category, message in IMPORT_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
        return importlib.import_module(module)


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
        module = _quiet_import("robustbench")
        _quiet_import("robustbench.utils")
    except ImportError as e:
        fix = AUTOATTACK_FIX if e.name == "autoattack" else "pip install 'classwise[robustbench]' installs what it needs"
        raise ClasswiseError(f"robustbench {version} is installed but cannot be imported ({e}); {fix}") from None
    _check_distribution(module, version)
    return module, version


# robustbench 1.1.1 from PyPI requires pyautoattack but imports AutoAttack as `autoattack` (the name of the official
# package from GitHub): classwise aliases it for itself; a user's own `import robustbench` needs this.
AUTOATTACK_FIX = ("AutoAttack must be importable as 'autoattack': pip install git+https://github.com/fra31/auto-attack "
                  "(the official package), or alias PyPI's pyautoattack before importing robustbench: "
                  "import sys, pyautoattack, pyautoattack.state; sys.modules['autoattack'] = pyautoattack; "
                  "sys.modules['autoattack.state'] = pyautoattack.state")


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
        raise ClasswiseError(f"RobustBench has no {dataset} {threat_model} model {name!r}{did_you_mean(name, zoo)}")
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
            raise ClasswiseError(f"robustbench could not load {name} ({dataset}, {threat_model}) from "
                                 f"{model_dir}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


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
