"""Streaming ImageFolder data: files are listed up front and decoded by DataLoader workers.

For folders too large to decode into memory (ImageNet: 1.28 M images, about 190 GB
at 224 px) or with ``data.stream: true``. Nothing is decoded until a batch needs it:

    bundle = open_stream(root, image_size=224)            # lists files, reads labels
    loader = make_loader(bundle.train, image_size=224, batch_size=256, train=True,
                         epoch=3, seed=0, start_batch=0, rank=0, world=1, workers=8)
    for x, y in loader:  # x (B, 3, 224, 224) uint8, y (B,) int64
        ...

Choices (docs/scale.md, "Streaming data"), after torchvision's ImageNet reference:

* training images: RandomResizedCrop(size, scale (0.08, 1), ratio (3/4, 4/3)) and a
  horizontal flip with probability 1/2; evaluation images: the shorter side resized to
  size / 0.875 (256 for 224), then a centre crop of size x size. Always RGB (3 channels).
* order: the permutation of ``torch.utils.data.DistributedSampler`` (seed + epoch,
  ``drop_last``), so under torchrun rank r takes ``global_batch[r::world]`` exactly as
  the in-memory path shards it. Each image's crop and flip come from its own generator,
  seeded by (seed, epoch, position in the epoch): the batches do not depend on the
  number of workers, and a resumed epoch (``start_batch``) continues the same order.
* "too large": streaming is chosen when the decoded uint8 size of both splits, files x
  3 x H x W (H x W the image size, or the first image's native size), exceeds half the
  memory available now (``MemAvailable`` of /proc/meminfo).
* mean/std for the model's normalisation: from up to 2,000 seeded training images
  (the test images when the folder holds only val/ or test/).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from classwise.data.imagefolder import (
    channel_stats,
    class_folders,
    known_superclasses,
    list_images,
    native_size,
    split_folders,
    to_rgb,
)
from classwise.errors import ClasswiseError
from classwise.machine import available_cpus, die_with_parent

STREAM_SIZE = 224  # image side when data.image_size is not set (the ImageNet reference)
EVAL_CROP = 0.875  # evaluation: resize the shorter side to size / EVAL_CROP, centre-crop size
CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop: area fraction ...
CROP_RATIO = (3 / 4, 4 / 3)  # ... and aspect ratio range
MEMORY_FRACTION = 0.5  # stream when the decoded data exceeds this share of the available memory
STATS_IMAGES = 2000  # images decoded for the normalisation statistics


@dataclass(frozen=True)
class FileList:
    """Image files of one split and their labels: paths (N,), labels (N,) int64."""

    paths: tuple[str, ...]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: torch.Tensor | np.ndarray) -> FileList:
        """The files at positions ``idx`` (K,), in that order; nothing is read."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return FileList(tuple(self.paths[i] for i in idx.tolist()), self.labels[idx])


@dataclass
class StreamBundle:
    """A dataset read from files when needed (the streaming counterpart of ``DataBundle``).

    It answers what models and checkpoints ask of a ``DataBundle`` (name, class names,
    superclasses, mean/std, channels, image size, labels) without decoding images.
    ``train`` is empty for a folder holding only val/ (or test/): evaluation only.
    """

    name: str
    train: FileList
    test: FileList
    class_names: list[str]
    image_size: int
    superclasses: dict[str, list[int]] = field(default_factory=dict)
    workers: int = 0
    seed: int = 0
    augment: str = "resized_crop_flip"
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std), computed when first asked
    stats_files: FileList | None = None  # where they come from: the whole train split, also after take_train
    streamed = True  # class attribute: the trainer picks its batch source by it

    @property
    def mean(self) -> tuple[float, ...]:
        return self._stats()[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self._stats()[1]

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of up to ``STATS_IMAGES`` seeded training images (test images when
        there are none), decoded on first use only: evaluating a trained model never reads them."""
        if self.stats is None:
            source = self.stats_files or (self.train if len(self.train) else self.test)
            pick = torch.randperm(len(source), generator=torch.Generator().manual_seed(self.seed))[:STATS_IMAGES]
            self.stats = channel_stats(decode_images(source, pick.sort().values, self.image_size, self.workers))
        return self.stats

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def train_y(self) -> torch.Tensor:
        return self.train.labels

    @property
    def test_y(self) -> torch.Tensor:
        return self.test.labels

    def take_train(self, idx: torch.Tensor) -> StreamBundle:
        """A copy keeping the training files at ``idx`` (K,); nothing is decoded."""
        return dataclasses.replace(self, train=self.train.subset(idx), stats_files=self.stats_files or self.train)

    def test_images(self, idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The test images at ``idx`` (K,) decoded for evaluation: (K, 3, S, S) uint8; no other file is read."""
        return decode_images(self.test, idx, self.image_size, self.workers)

    def train_images(self, idx: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The training images at ``idx`` (K,) with the evaluation transform: (K, 3, S, S) uint8."""
        return decode_images(self.train, idx, self.image_size, self.workers)


# -- deciding and opening ------------------------------------------------------------------------


def available_memory() -> int:
    """Bytes of memory available now: ``MemAvailable`` of /proc/meminfo, else free physical pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def decoded_bytes(files: int, height: int, width: int, channels: int = 3) -> int:
    """Bytes of ``files`` images held as uint8 (C, H, W), as the in-memory path holds them."""
    return files * channels * height * width


def too_large(files: int, height: int, width: int, available: int | None = None, copies: int = 1) -> bool:
    """The rule: stream when ``copies`` decoded copies (one per process on this machine) would take
    more than ``MEMORY_FRACTION`` of the available memory."""
    free = available_memory() if available is None else available
    return copies * decoded_bytes(files, height, width) > MEMORY_FRACTION * free


def should_stream(root: str | Path | None, image_size: int | None, stream: bool | None, copies: int = 1) -> bool:
    """``stream`` when given; otherwise True for a val-only tree or a tree that is :func:`too_large`
    (``copies``: processes on this machine that would each decode it, as torchrun's local ranks)."""
    if stream is not None:
        return stream
    train, test = split_folders(root)
    if train is None:
        return True
    classes = class_folders(train)
    paths = list_images(train, classes)[0] + list_images(test, classes)[0]
    if image_size is not None:
        return too_large(len(paths), image_size, image_size, copies=copies)
    width, height = native_size(paths[0])  # the header only
    return too_large(len(paths), height, width, copies=copies)


def open_stream(root: str | Path | None, image_size: int | None = None, workers: int | None = None,
                seed: int = 0) -> StreamBundle:
    """List an ImageFolder tree (train/ and test/ or val/, or val/ alone) without decoding it.

    Labels follow the sorted class folders of train/ (of val/ when alone), as torchvision.
    """
    train_dir, test_dir = split_folders(root)
    classes = class_folders(train_dir if train_dir is not None else test_dir)
    test = FileList(*_listed(test_dir, classes))
    train = FileList(*_listed(train_dir, classes)) if train_dir is not None else FileList((), test.labels[:0])
    return StreamBundle("imagefolder", train, test, classes, image_size or STREAM_SIZE, known_superclasses(classes),
                        workers=default_workers() if workers is None else workers, seed=seed)


def _listed(split_dir: Path, classes: list[str]) -> tuple[tuple[str, ...], torch.Tensor]:
    paths, labels = list_images(split_dir, classes)
    return tuple(str(p) for p in paths), torch.tensor(labels, dtype=torch.int64)


def default_workers() -> int:
    """DataLoader worker processes: the CPUs this process may use, at most 8 (0 on one CPU)."""
    cpus = available_cpus()
    return 0 if cpus <= 1 else min(8, cpus)


# -- decoding and augmentation -------------------------------------------------------------------


def decode(path: str):
    """One image file -> a PIL RGB image (one clear error when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ClasswiseError(f"cannot read image {path} ({exc}); remove or replace it.") from exc


def crop_box(width: int, height: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, right, bottom), drawn from ``gen`` as torchvision draws it."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*CROP_SCALE, generator=gen).item()
        ratio = math.exp(torch.empty(1).uniform_(*log_ratio, generator=gen).item())
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return left, top, left + w, top + h
    return _centre_box(width, height, CROP_RATIO)


def _centre_box(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's fallback: the largest centred box whose aspect ratio lies in ``ratio``."""
    if width / height < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def train_view(img, size: int, gen: torch.Generator) -> np.ndarray:
    """Random-resized crop to (size, size) and a random horizontal flip -> (3, size, size) uint8."""
    from PIL import Image

    width, height = img.size
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=crop_box(width, height, gen))
    if torch.rand(1, generator=gen).item() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out).transpose(2, 0, 1)


def eval_view(img, size: int) -> np.ndarray:
    """Shorter side to round(size / EVAL_CROP), centre crop (size, size) -> (3, size, size) uint8."""
    from PIL import Image

    short = round(size / EVAL_CROP)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


class ImageFiles(Dataset):
    """Items of a :class:`FileList`: ``ds[(i, seed)]`` (training view, crop drawn from ``seed``) or
    ``ds[i]`` (evaluation view) -> ((3, S, S) uint8 tensor, label)."""

    def __init__(self, files: FileList, size: int, train: bool) -> None:
        self.files, self.size, self.train = files, size, train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = item if isinstance(item, tuple) else (item, 0)
        img = decode(self.files.paths[i])
        if self.train:
            view = train_view(img, self.size, torch.Generator().manual_seed(seed))
        else:
            view = eval_view(img, self.size)
        return torch.from_numpy(np.ascontiguousarray(view)), int(self.files.labels[i])


# -- order and loaders ---------------------------------------------------------------------------


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the image at ``position`` of ``epoch``'s permutation."""
    return ((seed * 1_000_003 + epoch) * 2_147_483_647 + position) % (2**63)


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled, ``drop_last``) yielding (index, augmentation seed) pairs,
    from local position ``start`` on (a resumed epoch skips what it has trained)."""

    def __init__(self, dataset: Dataset, rank: int, world: int, seed: int, epoch: int, start: int = 0) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        for j, i in enumerate(super().__iter__()):
            if j >= self.start:  # local j is global position j * world + rank of the permutation
                yield i, sample_seed(self.seed, self.epoch, j * self.num_replicas + self.rank)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def make_loader(files: FileList, *, image_size: int, batch_size: int, train: bool, epoch: int = 0,
                seed: int = 0, start_batch: int = 0, rank: int = 0, world: int = 1, workers: int = 0,
                pin_memory: bool = False, indices: torch.Tensor | np.ndarray | None = None) -> DataLoader:
    """A DataLoader of (B, 3, S, S) uint8 images and (B,) int64 labels from ``files``.

    train=True: this rank's shard of each global batch of ``epoch`` (``batch_size`` is
    per process; the global batch is ``batch_size * world``), full batches only, from
    batch ``start_batch`` on; random-resized crop + flip. train=False: the files at
    ``indices`` (default all) in order, resize + centre crop, the last batch partial.
    Workers decode (``workers`` processes, 0: this one); ``pin_memory`` for CUDA copies.
    """
    data = ImageFiles(files, image_size, train)
    if train:
        sampler = EpochSampler(data, rank, world, seed, epoch, start=start_batch * batch_size)
        batches = BatchSampler(sampler, batch_size, drop_last=True)
    else:
        order = range(len(files)) if indices is None else torch.as_tensor(indices).tolist()
        batches = BatchSampler(order, batch_size, drop_last=False)
    return DataLoader(data, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_one_thread, generator=torch.Generator().manual_seed(seed),
                      persistent_workers=False)


def _one_thread(_: int) -> None:
    die_with_parent(os.getppid())  # no worker outlives a killed parent
    torch.set_num_threads(1)  # workers decode with PIL; torch threads would only compete


def batches(loader: DataLoader):
    """Iterate ``loader``; an image error raised in a worker comes back as one ClasswiseError line."""
    try:
        yield from loader
    except ClasswiseError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise ClasswiseError(lines[-1].split("ClasswiseError: ", 1)[-1]) from None


def decode_images(files: FileList, idx: torch.Tensor | np.ndarray, size: int, workers: int = 0,
                  batch_size: int = 64) -> torch.Tensor:
    """Files at ``idx`` (K,) decoded with the evaluation view into one (K, 3, S, S) uint8 tensor."""
    idx = torch.as_tensor(idx, dtype=torch.int64)
    out = torch.empty((len(idx), 3, size, size), dtype=torch.uint8)
    loader = make_loader(files, image_size=size, batch_size=batch_size, train=False,
                         workers=min(workers, max(1, len(idx) // batch_size)), indices=idx)
    start = 0
    for x, _ in batches(loader):
        out[start:start + len(x)] = x
        start += len(x)
    return out


__all__ = ["FileList", "ImageFiles", "StreamBundle", "available_memory", "decode_images", "decoded_bytes",
           "make_loader", "open_stream", "should_stream", "too_large"]
