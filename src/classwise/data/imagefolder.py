"""Any ImageFolder tree (ImageNet, the JPEG copy of CIFAR-10) read into uint8 tensors.

Layout: ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/...`` (or ``ROOT/val``).
Labels follow the alphabetical order of the train class folders, as in torchvision.
Images are decoded by a thread pool (PIL releases the GIL while decoding) straight into
one preallocated (N, C, H, W) uint8 array. With ``image_size`` every image is resized so
its shorter side is ``image_size`` and centre-cropped to a square (``PIL.ImageOps.fit``);
without it all images must already share one size. If every image is greyscale the
bundle has 1 channel and no flip augmentation, otherwise 3 (RGB) channels and
"crop_flip". mean/std are computed from the training images.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classwise.data.builtin import Tensors
from classwise.data.bundle import DataBundle
from classwise.data.classes import (
    CIFAR10_CLASSES,
    CIFAR10_SUPERCLASSES,
    STL10_CLASSES,
    STL10_SUPERCLASSES,
    as_lists,
)
from classwise.data.request import LoadRequest
from classwise.errors import ClasswiseError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def load_imagefolder(request: LoadRequest) -> DataBundle:
    """Train and test splits of an ImageFolder tree under ``request.root``."""
    train_dir, test_dir = split_dirs(request.root)
    classes = class_folders(train_dir)
    train_x, train_y = read_split(train_dir, classes, request.image_size)
    test_x, test_y = read_split(test_dir, classes, request.image_size)
    if train_x.shape[1] != test_x.shape[1]:  # one split all grey, the other in colour
        train_x, test_x = (x.expand(-1, 3, -1, -1).contiguous() for x in (train_x, test_x))
    mean, std = channel_stats(train_x)
    return DataBundle(
        name="imagefolder", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        class_names=classes, superclasses=known_superclasses(classes), mean=mean, std=std,
        augment="crop_flip" if train_x.shape[1] == 3 else "none",
    )


SPLITS = ("test", "val")  # the evaluation folder, in order of preference


def split_folders(root: str | Path | None) -> tuple[Path | None, Path]:
    """(train folder or None for a val-only tree, test-or-val folder) of an ImageFolder root."""
    hint = "pass --data-root pointing to a folder with train/ and test/ (or val/), or val/ alone to evaluate"
    if root is None:
        raise ClasswiseError(f"dataset 'imagefolder' needs a data root; {hint}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ClasswiseError(f"image folder {root} does not exist; {hint}.")
    test = next((root / s for s in SPLITS if (root / s).is_dir()), None)
    if test is None:
        raise ClasswiseError(f"{root} has no test/ (or val/) subfolder; {hint}.")
    return (root / "train" if (root / "train").is_dir() else None), test


def split_dirs(root: str | Path | None) -> tuple[Path, Path]:
    """(train folder, test-or-val folder) of an ImageFolder root that must hold both (the in-memory path)."""
    train, test = split_folders(root)
    if train is None:
        raise ClasswiseError(f"{test.parent} lacks a train/ subfolder; decoding into memory needs "
                             "train/ and test/ (or val/); evaluate a val-only tree with --set data.stream=true.")
    return train, test


def class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the class folders inside one split folder."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise ClasswiseError(f"{split_dir} has no class folders; put one folder per class there.")
    return classes


def list_images(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Image paths (sorted within each class folder) and their labels."""
    unknown = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise ClasswiseError(f"{split_dir} has class folders {unknown} missing from train/.")
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (split_dir / name).rglob("*") if is_image(p)) if (split_dir / name).is_dir() else []
        empty += [] if found else [name]
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise ClasswiseError(f"{split_dir} holds no images ({', '.join(IMG_EXTENSIONS)}).")
    if empty:  # a class without images has no accuracy to report, nor anything to learn from
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ClasswiseError(f"{split_dir} has no images of class {shown}; every class needs images "
                             "in both train/ and test/ (remove the class folder everywhere, or add images).")
    return paths, labels


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS and path.is_file()


def read_split(split_dir: Path, classes: list[str], size: int | None) -> Tensors:
    """All images of one split -> (N, C, H, W) uint8 and (N,) int64 labels."""
    paths, labels = list_images(split_dir, classes)
    first, _ = read_image(paths[0], size)  # (3, H, W)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)

    def fill(i: int) -> bool:
        image, gray = read_image(paths[i], size)
        if image.shape != first.shape:
            raise size_error(paths[i], image.shape, paths[0], first.shape)
        out[i] = image
        return gray

    with warnings.catch_warnings(), ThreadPoolExecutor() as pool:  # the filter covers the workers
        warnings.simplefilter("error", _bomb_warning())
        all_gray = all(list(pool.map(fill, range(len(paths)))))
    x = torch.from_numpy(out[:, :1].copy() if all_gray else out)
    return x, torch.tensor(labels, dtype=torch.int64)


@contextmanager
def readable(path: Path | str) -> Iterator[None]:
    """Turn PIL's failures on ``path`` (unreadable file, decompression bomb) into one error.

    A bomb PIL only warns about counts where the caller made that warning an error
    (as :func:`read_split` does for its reader threads).
    """
    from PIL import Image

    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ClasswiseError(f"image {path} has more pixels than PIL's safety limit "
                             f"({Image.MAX_IMAGE_PIXELS}; a decompression bomb?); remove or shrink it.") from exc
    except (OSError, ValueError) as exc:
        raise ClasswiseError(f"cannot read image {path} ({exc}); remove or replace it.") from exc


def native_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image file from its header, or one clear error."""
    from PIL import Image

    with warnings.catch_warnings(), readable(path):
        warnings.simplefilter("error", _bomb_warning())
        with Image.open(path) as img:
            return img.size


def to_rgb(img: Any) -> Any:
    """A PIL image of any mode -> 8-bit RGB, values kept as they are meant.

    16-bit greyscale ("I;16*", and "I" holding 0..65535) is scaled to 0..255
    (round(v / 257)); PIL's own conversion saturates it (every pixel above 255
    becomes white). Palette, CMYK, 1-bit and greyscale go through PIL's
    conversion; an alpha channel is dropped, as torchvision's ImageFolder loader
    does, so models see the pixels they were trained on. 32-bit float ("F") has
    no known range and is refused (ValueError, turned into one error with the path).
    """
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{img.mode} pixels outside 0..65535 have no known range; save it as 8- or 16-bit")
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no known range; save it as 8- or 16-bit")
    return img.convert("RGB")


def read_image(path: Path, size: int | None) -> tuple[np.ndarray, bool]:
    """One image file -> (3, H, W) uint8 RGB array and whether it was greyscale."""
    from PIL import Image, ImageOps

    with readable(path), Image.open(path) as img:
        gray = img.mode in GRAY_MODES
        rgb = to_rgb(img)
    if size is not None and rgb.size != (size, size):
        rgb = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1), gray


def _bomb_warning() -> type[Warning]:
    from PIL import Image

    return Image.DecompressionBombWarning


def size_error(path: Path, shape: tuple, ref: Path, ref_shape: tuple) -> ClasswiseError:
    return ClasswiseError(
        f"image {path} is {shape[2]}x{shape[1]} but {ref} is {ref_shape[2]}x{ref_shape[1]}; "
        "set image_size (--image-size) to resize every image to one square size."
    )


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W).

    Summed in float64 chunks of about 16M values; std is floored at 1/255 so that a
    constant channel cannot divide by zero in the model's normalisation.
    """
    chunk = max(1, 2**24 // max(1, x[0].numel()))
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1 / 255)
    return tuple(mean.tolist()), tuple(std.tolist())


def known_superclasses(classes: list[str]) -> dict[str, list[int]]:
    """CIFAR-10 or STL-10 superclasses when the folder names are exactly theirs, else {}."""
    if tuple(classes) == CIFAR10_CLASSES:
        return as_lists(CIFAR10_SUPERCLASSES)
    if tuple(classes) == STL10_CLASSES:
        return as_lists(STL10_SUPERCLASSES)
    return {}
