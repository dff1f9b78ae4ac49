"""Class names and superclass groups of the built-in datasets.

Everything here is an immutable constant (tuples, read-only mappings); the loaders
turn the tables into the plain ``dict[str, list[int]]`` a ``DataBundle`` carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SUPERCLASSES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "transport": (0, 1, 8, 9),
    "animals": (2, 3, 4, 5, 6, 7),
})

STL10_CLASSES: tuple[str, ...] = (
    "airplane", "bird", "car", "cat", "deer",
    "dog", "horse", "monkey", "ship", "truck",
)
STL10_SUPERCLASSES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "transport": (0, 2, 8, 9),
    "animals": (1, 3, 4, 5, 6, 7),
})

# Official fine labels, in the label order of the CIFAR-100 ``meta`` file (alphabetical).
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose",
    "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# Official coarse labels, in the label order of the CIFAR-100 ``meta`` file.
CIFAR100_COARSE_CLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects",
    "large_carnivores", "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)

# Coarse label of each fine label (index = fine label), as in the official train/test files.
CIFAR100_FINE_TO_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)


def cifar100_superclasses() -> dict[str, list[int]]:
    """The 20 official CIFAR-100 superclasses: coarse name -> its 5 fine labels (sorted)."""
    groups: dict[str, list[int]] = {name: [] for name in CIFAR100_COARSE_CLASSES}
    for fine, coarse in enumerate(CIFAR100_FINE_TO_COARSE):
        groups[CIFAR100_COARSE_CLASSES[coarse]].append(fine)
    return groups


def as_lists(table: Mapping[str, tuple[int, ...]]) -> dict[str, list[int]]:
    """Read-only superclass table -> a fresh ``dict[str, list[int]]`` for a bundle."""
    return {name: list(members) for name, members in table.items()}
