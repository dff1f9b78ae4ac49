"""Model registry and factory, timm style: ``create_model(name, ...)``, ``model_names()``.

The CLI and the tests iterate :func:`model_names`. Every model follows the
contract of :class:`classwise.models.base.Classifier`: [0, 1] images (B, C, H, W)
-> logits (B, K), ``features(x)`` (B, D), ``head`` a replaceable ``nn.Linear(D, K)``,
input normalisation as ``mean``/``std`` buffers inside the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import inspect
from types import MappingProxyType

from torch import nn

from ..errors import unknown_name
from .fastcnn import build_fastcnn
from .preact_resnet import build_preact_resnet18
from .resnet import build_resnet18
from .resnet50 import build_resnet50
from .smallcnn import build_smallcnn
from .wideresnet import build_wideresnet
from .outside import KINDS, build_outside, split_spec

Builder = Callable[..., nn.Module]

# Read-only: name -> builder(num_classes, in_channels, image_size, mean, std, **kwargs).
_MODELS: Mapping[str, Builder] = MappingProxyType({
    "smallcnn": build_smallcnn,
    "resnet18": build_resnet18,
    "preact_resnet18": build_preact_resnet18,
    "wideresnet": build_wideresnet,
    "resnet50": build_resnet50,
    "fastcnn": build_fastcnn,
})
_COMMON = ("num_classes", "in_channels", "image_size", "mean", "std")


def model_names() -> list[str]:
    """Registered model names, in registry order."""
    return list(_MODELS)


def outside_kinds() -> list[str]:
    """Spec prefixes of models classwise did not define: ``torchvision:NAME``, ``timm:NAME``, ``robustbench:NAME``."""
    return [f"{kind}:NAME" for kind in KINDS]


def model_kwargs(name: str) -> dict[str, object]:
    """Model-specific keyword arguments of ``name`` and their defaults."""
    params = inspect.signature(_builder(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _COMMON}


def _builder(name: str) -> Builder:
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def _check_common(num_classes: int, in_channels: int, image_size: int) -> None:
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")


def create_model(
    name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
    mean: Sequence[float] | float = (0.0,), std: Sequence[float] | float = (1.0,), **kwargs: object,
) -> nn.Module:
    """Build a registered model mapping [0, 1] images (B, C, H, W) to logits (B, K).

    Args:
        name: one of :func:`model_names`.
        num_classes: K. in_channels: C. image_size: H = W of the inputs.
        mean, std: per-channel normalisation (1 value or C values), stored as buffers.
        kwargs: model-specific options (see :func:`model_kwargs`), e.g.
            ``create_model("wideresnet", depth=34, width=10, dropout=0.0)``.

    A spec ``torchvision:NAME``, ``timm:NAME`` or ``robustbench:NAME`` builds that
    library's architecture with fresh weights (:mod:`classwise.models.outside`);
    its ``kwargs`` go to the library's builder.

    Raises:
        ClasswiseError: unknown name. ValueError: bad sizes or keyword arguments.
    """
    if split_spec(name)[0] is not None:
        _check_common(num_classes, in_channels, image_size)
        try:
            return build_outside(name, num_classes, in_channels, image_size, mean, std, **kwargs)
        except TypeError as e:
            raise ValueError(f"model {name!r}: {e}") from None
    builder = _builder(name)
    unknown = sorted(set(kwargs) - set(model_kwargs(name)))
    if unknown:
        accepted = ", ".join(model_kwargs(name)) or "none"
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; accepted: {accepted}")
    _check_common(num_classes, in_channels, image_size)
    return builder(num_classes, in_channels, image_size, mean, std, **kwargs)
