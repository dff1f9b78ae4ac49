"""Datasets as in-memory uint8 tensors (or streamed from files): the registry, class tables, class removal.

    bundle = load_data("mnist5k")          # needs no files
    bundle = load_data("cifar10", root)    # torchvision files under root
"""

from classwise.data.bundle import DataBundle, as_float
from classwise.data.classes import (
    CIFAR10_CLASSES,
    CIFAR10_SUPERCLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    DIGIT_CLASSES,
    STL10_CLASSES,
    STL10_SUPERCLASSES,
    cifar100_superclasses,
)
from classwise.data.ops import class_balanced_indices, remove_class, subsample_train
from classwise.data.registry import dataset_names, load_data, resize_uint8
from classwise.data.request import DEFAULT_ROOT, LoadRequest
from classwise.data.streaming import FileList, StreamBundle, make_loader, open_stream

__all__ = [
    "CIFAR10_CLASSES",
    "subsample_train",
    "CIFAR10_SUPERCLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_TO_COARSE",
    "DEFAULT_ROOT",
    "DIGIT_CLASSES",
    "STL10_CLASSES",
    "STL10_SUPERCLASSES",
    "DataBundle",
    "FileList",
    "StreamBundle",
    "make_loader",
    "open_stream",
    "LoadRequest",
    "as_float",
    "cifar100_superclasses",
    "class_balanced_indices",
    "dataset_names",
    "load_data",
    "remove_class",
    "resize_uint8",
]
