"""Contracts of the data registry: shapes, fixed splits, clear errors, class tables."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classwise.data import (
    CIFAR10_CLASSES,
    CIFAR10_SUPERCLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    STL10_CLASSES,
    STL10_SUPERCLASSES,
    DataBundle,
    as_float,
    cifar100_superclasses,
    class_balanced_indices,
    dataset_names,
    load_data,
    remove_class,
)
from classwise.data import builtin
from classwise.data.builtin import mnist5k_split, read_mnist5k
from classwise.errors import ClasswiseError


def shared_data() -> Path:
    """The offline data folder: $CLASSWISE_SHARED_DATA or ../shared/data next to the repo."""
    env = os.environ.get("CLASSWISE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def mnist5k() -> DataBundle:
    return load_data("mnist5k")


def image_set(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


# ---------------------------------------------------------------- registry

def test_registry_names_default_first():
    names = dataset_names()
    assert names[0] == "mnist5k"
    assert set(names) == {"mnist5k", "mnist", "cifar10", "cifar100", "svhn", "stl10", "imagefolder"}


def test_unknown_name_lists_known_names():
    with pytest.raises(ClasswiseError, match="unknown dataset 'mnist7'.*mnist5k.*imagefolder"):
        load_data("mnist7")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
     ("svhn", "train_32x32.mat"), ("stl10", "stl10_binary"), ("mnist", "MNIST/raw")],
)
def test_torchvision_offline_error_names_expected_folder(tmp_path, name, expected):
    with pytest.raises(ClasswiseError) as info:
        load_data(name, root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / expected) in message
    assert "--data-root" in message and "\n" not in message


def test_dataset_infos_are_consistent():
    for info in (builtin.MNIST_INFO, builtin.CIFAR10_INFO, builtin.CIFAR100_INFO,
                 builtin.SVHN_INFO, builtin.STL10_INFO):
        assert len(info.mean) == len(info.std) in (1, 3)
        assert all(0 < s < 1 for s in info.std) and all(0 < m < 1 for m in info.mean)
        members = [i for group in info.superclasses().values() for i in group]
        assert all(0 <= i < len(info.classes) for i in members)
    assert builtin.CIFAR10_INFO.augment == "crop_flip" and builtin.SVHN_INFO.augment == "none"
    assert builtin.CIFAR100_INFO.superclasses() == cifar100_superclasses()


# ---------------------------------------------------------------- mnist5k

def test_mnist5k_shapes_and_balance(mnist5k):
    assert mnist5k.train_x.shape == (4000, 1, 28, 28) and mnist5k.test_x.shape == (1000, 1, 28, 28)
    assert mnist5k.train_x.dtype == torch.uint8 and mnist5k.train_y.dtype == torch.int64
    assert mnist5k.test_y.bincount().tolist() == [100] * 10
    assert mnist5k.train_y.bincount().tolist() == [400] * 10
    assert mnist5k.class_names == [str(d) for d in range(10)]
    assert (mnist5k.mean, mnist5k.std, mnist5k.augment) == ((0.1307,), (0.3081,), "none")
    assert int(mnist5k.train_x.max()) == 255
    assert len(set(mnist5k.test_y[:50].tolist())) == 10  # shuffled, not sorted by label


def test_mnist5k_split_fixed_and_disjoint(mnist5k):
    again = load_data("mnist5k", seed=7)  # the split ignores the seed
    assert torch.equal(again.test_x, mnist5k.test_x) and torch.equal(again.train_y, mnist5k.train_y)
    train, test = image_set(mnist5k.train_x), image_set(mnist5k.test_x)
    assert len(train) == 4000 and len(test) == 1000 and not train & test


def test_mnist5k_split_is_pinned():
    _, labels = read_mnist5k()
    train_idx, test_idx = mnist5k_split(labels)
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(5000))
    assert test_idx[:5].tolist() == [3400, 1865, 153, 4127, 4096]  # results stay comparable


def test_image_size_resizes_uint8():
    bundle = load_data("mnist5k", image_size=32)
    assert bundle.train_x.shape == (4000, 1, 32, 32) and bundle.test_x.dtype == torch.uint8
    assert bundle.image_size == 32


def test_as_float_range(mnist5k):
    x = as_float(mnist5k.test_x[:4])
    assert x.dtype == torch.float32 and float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert as_float(x) is x


# ---------------------------------------------------------------- real MNIST

def test_real_mnist_from_shared_data():
    root = shared_data()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST under {root} (set CLASSWISE_SHARED_DATA)")
    bundle = load_data("mnist", root=root, download=False)
    assert bundle.train_x.shape == (60000, 1, 28, 28) and bundle.test_x.shape == (10000, 1, 28, 28)
    assert bundle.train_x.dtype == torch.uint8
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert bundle.test_y.bincount().tolist() == counts
    assert bundle.train_y[:5].tolist() == [5, 0, 4, 1, 9]


# ---------------------------------------------------------------- imagefolder

def write_tree(root: Path, classes: dict[str, int], split: str, per_class: int,
               size: int = 8, mode: str = "RGB") -> None:
    """PNGs whose pixels all equal the class's value; channel c adds c."""
    for name, value in classes.items():
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((size, size, 3), value, dtype=np.uint8) + np.arange(3, dtype=np.uint8)
            image = Image.fromarray(pixels if mode == "RGB" else pixels[..., 0], mode)
            image.save(folder / f"{i:03d}.png")


TINY = {"zebra": 200, "ant": 10, "moose": 100}  # alphabetical: ant=0, moose=1, zebra=2


@pytest.mark.parametrize("test_split", ["test", "val"])
def test_imagefolder_labels_follow_folder_order(tmp_path, test_split):
    write_tree(tmp_path, TINY, "train", 2)
    write_tree(tmp_path, TINY, test_split, 1)
    bundle = load_data("imagefolder", root=tmp_path)
    assert bundle.class_names == ["ant", "moose", "zebra"]
    assert bundle.train_x.shape == (6, 3, 8, 8) and bundle.test_x.shape == (3, 3, 8, 8)
    assert bundle.train_x.dtype == torch.uint8 and bundle.augment == "crop_flip"
    expected = {0: 10, 1: 100, 2: 200}
    for x, y in zip(bundle.train_x, bundle.train_y.tolist()):
        assert x[:, 0, 0].tolist() == [expected[y], expected[y] + 1, expected[y] + 2]
    assert bundle.mean[0] == pytest.approx((10 + 100 + 200) / 3 / 255)
    assert bundle.superclasses == {}


def test_imagefolder_grayscale_has_one_channel(tmp_path):
    for split in ("train", "test"):
        write_tree(tmp_path, TINY, split, 1, mode="L")
    bundle = load_data("imagefolder", root=tmp_path)
    assert bundle.train_x.shape == (3, 1, 8, 8) and bundle.augment == "none"


def test_imagefolder_sizes_must_agree_or_resize(tmp_path):
    write_tree(tmp_path, {"a": 1}, "train", 1, size=8)
    write_tree(tmp_path, {"b": 2}, "train", 1, size=12)
    write_tree(tmp_path, {"a": 1, "b": 2}, "test", 1, size=8)
    with pytest.raises(ClasswiseError, match="image_size"):
        load_data("imagefolder", root=tmp_path)
    bundle = load_data("imagefolder", root=tmp_path, image_size=6)
    assert bundle.train_x.shape == (2, 3, 6, 6) and bundle.test_x.shape == (2, 3, 6, 6)


def test_imagefolder_cifar10_names_get_superclasses(tmp_path):
    classes = {name: 10 * i for i, name in enumerate(CIFAR10_CLASSES)}
    write_tree(tmp_path, classes, "train", 1)
    write_tree(tmp_path, classes, "test", 1)
    bundle = load_data("imagefolder", root=tmp_path)
    assert bundle.superclasses == {"transport": [0, 1, 8, 9], "animals": [2, 3, 4, 5, 6, 7]}


def test_imagefolder_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ClasswiseError, match=str(missing)):
        load_data("imagefolder", root=missing)
    with pytest.raises(ClasswiseError, match="data root"):
        load_data("imagefolder")
    write_tree(tmp_path, TINY, "train", 1)
    with pytest.raises(ClasswiseError, match="test/"):
        load_data("imagefolder", root=tmp_path)
    write_tree(tmp_path, TINY, "test", 1)
    broken = tmp_path / "test" / "ant" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ClasswiseError, match="broken.png"):
        load_data("imagefolder", root=tmp_path)


# ---------------------------------------------------------------- operations

def tiny_bundle() -> DataBundle:
    train_y = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    test_y = torch.tensor([0, 1, 2])
    return DataBundle(
        name="tiny", train_x=train_y.view(-1, 1, 1, 1).to(torch.uint8).expand(-1, 1, 2, 2),
        train_y=train_y, test_x=torch.zeros(3, 1, 2, 2, dtype=torch.uint8), test_y=test_y,
        class_names=["a", "b", "c"],
    )


def test_remove_class_drops_only_training_examples():
    bundle = tiny_bundle()
    removed = remove_class(bundle, 2)
    assert removed.train_y.tolist() == [0, 1, 1, 0]
    assert removed.train_x[:, 0, 0, 0].tolist() == [0, 1, 1, 0]  # images follow labels
    assert torch.equal(removed.test_y, bundle.test_y) and torch.equal(removed.test_x, bundle.test_x)
    assert removed.class_names == bundle.class_names and removed.num_classes == 3
    assert len(bundle.train_y) == 7  # the input is untouched
    with pytest.raises(ValueError):
        remove_class(bundle, 3)


def test_class_balanced_indices_contract():
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(10).repeat_interleave(20)[order]  # (200,), 20 per class
    idx = class_balanced_indices(labels, 5, seed=0)
    assert idx.dtype == torch.int64 and len(idx) == 50
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 50
    assert labels[idx].bincount().tolist() == [5] * 10
    assert torch.equal(idx, class_balanced_indices(labels, 5, seed=0))
    assert not torch.equal(idx, class_balanced_indices(labels, 5, seed=1))
    with pytest.raises(ClasswiseError, match="fewer"):
        class_balanced_indices(labels, 21, seed=0)


# ---------------------------------------------------------------- class tables

def assert_partition(groups, k: int) -> None:
    members = sorted(i for group in groups for i in group)
    assert members == list(range(k))


def test_cifar10_and_stl10_superclasses():
    assert_partition(CIFAR10_SUPERCLASSES.values(), 10)
    assert_partition(STL10_SUPERCLASSES.values(), 10)
    assert [CIFAR10_CLASSES[i] for i in CIFAR10_SUPERCLASSES["transport"]] == [
        "airplane", "automobile", "ship", "truck"]
    assert [STL10_CLASSES[i] for i in STL10_SUPERCLASSES["transport"]] == [
        "airplane", "car", "ship", "truck"]


# The CIFAR-100 superclass table as listed on the dataset's page, by fine class name.
CIFAR100_BY_NAME = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def test_cifar100_superclasses_match_official_table():
    assert len(CIFAR100_CLASSES) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    groups = cifar100_superclasses()
    assert list(groups) == list(CIFAR100_COARSE_CLASSES) and len(groups) == 20
    assert all(len(members) == 5 for members in groups.values())
    assert_partition(groups.values(), 100)
    for coarse, names in CIFAR100_BY_NAME.items():
        assert sorted(CIFAR100_CLASSES[i] for i in groups[coarse]) == names.split()


# ---------------------------------------------------------------- slow: real CIFAR-10 JPEGs

@pytest.mark.slow
def test_cifar10_jpeg75_test_split(tmp_path):
    archive = shared_data() / "cifar10-jpeg75.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent (set CLASSWISE_SHARED_DATA)")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/test/" in m.name]
        tar.extractall(tmp_path, members=members, filter="data")
    root = tmp_path / "cifar10-jpeg75"
    (root / "train").symlink_to(root / "test")  # only the test split is extracted
    bundle = load_data("imagefolder", root=root)
    assert bundle.test_x.shape == (10000, 3, 32, 32)
    assert bundle.test_y.bincount().tolist() == [1000] * 10
    assert bundle.class_names == list(CIFAR10_CLASSES)
    assert bundle.superclasses == {"transport": [0, 1, 8, 9], "animals": [2, 3, 4, 5, 6, 7]}
    assert bundle.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.01)  # RGB order


def test_packaged_mnist5k_is_the_first_500_training_images_of_each_digit():
    """Provenance (data/MNIST5K.md): the sample equals real MNIST's first 500 training images per digit."""
    root = shared_data() / "MNIST" / "raw"
    if not (root / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"no raw MNIST under {root} (set CLASSWISE_SHARED_DATA)")
    images = np.fromfile(root / "train-images-idx3-ubyte", np.uint8)[16:].reshape(-1, 784)
    labels = np.fromfile(root / "train-labels-idx1-ubyte", np.uint8)[8:]
    x, y = read_mnist5k()
    assert np.array_equal(x, np.concatenate([images[labels == d][:500] for d in range(10)]))
    assert np.array_equal(y, np.repeat(np.arange(10), 500)) and y.dtype == np.int64


def test_a_damaged_mnist5k_file_is_refused(monkeypatch):
    import classwise.data.builtin as builtin

    monkeypatch.setattr(builtin, "MNIST5K_SHA256", "0" * 64)
    with pytest.raises(ClasswiseError, match="damaged"):
        builtin.read_mnist5k()




# ---------------------------------------------------------------- image modes

def _mode_images(folder: Path) -> dict[str, tuple[Path, list[list[int]]]]:
    """One 4x1 image per PIL mode, and the RGB rows (4 pixels) it must decode to."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[Image.Image, list[list[int]]]] = {}
    made["gray16.png"] = (Image.fromarray(np.array([[0, 257, 1000, 65535]], np.uint16)),
                          [[v] * 3 for v in (0, 1, 4, 255)])  # round(v / 257), not saturated
    palette = Image.new("P", (4, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putdata([0, 1, 1, 0])
    made["palette.png"] = (palette, [[10, 20, 30], [200, 100, 50], [200, 100, 50], [10, 20, 30]])
    made["cmyk.tif"] = (Image.fromarray(np.array([[[0, 255, 255, 0]] * 4], np.uint8), "CMYK"), [[255, 0, 0]] * 4)
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128], [70, 80, 90, 255], [1, 2, 3, 7]]], np.uint8)
    made["rgba.png"] = (Image.fromarray(rgba, "RGBA"), rgba[0, :, :3].tolist())  # alpha dropped
    la = np.array([[[100, 0], [150, 255], [0, 9], [255, 1]]], np.uint8)
    made["la.png"] = (Image.fromarray(la, "LA"), [[v] * 3 for v in (100, 150, 0, 255)])
    made["bits.png"] = (Image.fromarray(np.array([[0, 255, 0, 255]], np.uint8)).convert("1"),
                        [[v] * 3 for v in (0, 255, 0, 255)])
    out = {}
    for name, (image, rows) in made.items():
        image.save(folder / name)
        out[name] = (folder / name, rows)
    return out


def test_every_image_mode_decodes_to_its_pixel_values(tmp_path):
    """16-bit, palette, CMYK, alpha, grey+alpha and 1-bit files, in memory and streamed alike."""
    from classwise.data.imagefolder import read_image
    from classwise.data.streaming import decode

    for name, (path, rows) in _mode_images(tmp_path).items():
        pixels, _ = read_image(path, None)
        assert pixels[:, 0, :].T.tolist() == rows, name
        assert np.asarray(decode(str(path)))[0].tolist() == rows, name


def test_float_images_are_refused_with_the_path(tmp_path):
    from classwise.data.imagefolder import read_image
    from classwise.data.streaming import decode

    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.5, 2.0]], np.float32), "F").save(path)
    for read in (lambda: read_image(path, None), lambda: decode(str(path))):
        with pytest.raises(ClasswiseError, match="float.tif.*mode F"):
            read()
