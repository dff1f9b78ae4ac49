"""The dataset registry: name -> loader, and ``load_data``, the one entry point."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F

from classwise.data import builtin
from classwise.data.bundle import DataBundle
from classwise.data.imagefolder import load_imagefolder
from classwise.data.request import Loader, LoadRequest
from classwise.data.streaming import StreamBundle, open_stream, should_stream
from classwise.errors import ClasswiseError, unknown_name

LOADERS: Mapping[str, Loader] = MappingProxyType({
    "mnist5k": builtin.load_mnist5k,
    "mnist": builtin.load_mnist,
    "cifar10": builtin.load_cifar10,
    "cifar100": builtin.load_cifar100,
    "svhn": builtin.load_svhn,
    "stl10": builtin.load_stl10,
    "imagefolder": load_imagefolder,
})


def dataset_names() -> list[str]:
    """Registered dataset names, the default ("mnist5k") first."""
    return list(LOADERS)


def load_data(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
    seed: int = 0,
    stream: bool | None = None,
    workers: int | None = None,
) -> DataBundle | StreamBundle:
    """Load a registered dataset as a ``DataBundle`` of uint8 (N, C, H, W) images.

    An "imagefolder" tree too large for memory, a val-only tree, or any tree with
    ``stream=True`` comes back as a ``StreamBundle`` instead: files listed, decoded by
    DataLoader workers when needed (:mod:`classwise.data.streaming`).

    Args:
        name: one of ``dataset_names()``.
        root: data folder; None means ``~/.cache/classwise/data`` (ignored by
            "mnist5k", required by "imagefolder", which reads ROOT/train and ROOT/test).
        download: let torchvision fetch missing files; off, missing files raise.
        image_size: resize images to image_size x image_size (None: native size).
        seed: reserved for randomised splits; all built-in splits are fixed.
        stream: True streams, False decodes whole, None decides (:func:`should_stream`).
        workers: DataLoader worker processes of a streamed tree (None: one per CPU, at most 8).

    Raises:
        ClasswiseError: unknown name, missing files, unreadable images.
    """
    if name not in LOADERS:
        raise unknown_name("dataset", name, LOADERS)
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if name == "imagefolder" and should_stream(root, image_size, stream):
        streamed = open_stream(root, image_size, workers, seed)
        check_classes(streamed)
        return streamed
    if stream:
        raise ClasswiseError(f"data.stream reads ImageFolder trees; dataset {name!r} is decoded in memory "
                             "(drop data.stream, or use --dataset imagefolder)")
    request = LoadRequest(
        root=None if root is None else Path(root), download=download,
        image_size=image_size, seed=seed,
    )
    bundle = LOADERS[name](request)
    check_classes(bundle)
    if image_size is None or bundle.image_size == image_size:
        return bundle
    return _resized(bundle, image_size)


def check_classes(bundle: DataBundle | StreamBundle) -> None:
    """Refuse a dataset with fewer than 2 classes, or a class missing from its train or test split.

    A streamed val-only tree (no training files) is checked on its test split only.
    """
    k = bundle.num_classes
    if k < 2:
        raise ClasswiseError(f"dataset {bundle.name!r} has {k} class ({', '.join(bundle.class_names)}); "
                             "class-wise robustness needs at least 2 classes.")
    for split, labels in (("train", bundle.train_y), ("test", bundle.test_y)):
        if split == "train" and bundle.streamed and not len(labels):
            continue  # evaluation only
        counts = torch.bincount(labels.clamp_min(0), minlength=k)[:k]  # loaders give labels in [0, K)
        missing = [bundle.class_names[c] for c in torch.nonzero(counts == 0).flatten().tolist()]
        if missing:
            raise ClasswiseError(f"dataset {bundle.name!r} has no {split} images of class {', '.join(missing[:5])}; "
                                 f"every class needs {split} images.")


def _resized(bundle: DataBundle, size: int) -> DataBundle:
    """Both splits of a square-image bundle resized to (size, size)."""
    return dataclasses.replace(
        bundle, train_x=resize_uint8(bundle.train_x, size), test_x=resize_uint8(bundle.test_x, size)
    )


def resize_uint8(x: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8 by antialiased bilinear resizing."""
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out
