"""Operations on bundles and labels: class removal and class-balanced subsets."""

from __future__ import annotations

import torch

from classwise.data.bundle import DataBundle
from classwise.data.streaming import StreamBundle
from classwise.errors import ClasswiseError


def remove_class(bundle: DataBundle | StreamBundle, j: int) -> DataBundle | StreamBundle:
    """A copy of ``bundle`` without the training examples of class ``j``.

    The test split, class names and label numbering are unchanged, so a model trained
    on the result still has K outputs and is evaluated on all K classes (homing).
    Shapes: train_x (N, C, H, W) -> (N - n_j, C, H, W), train_y (N,) -> (N - n_j,).
    """
    if not 0 <= j < bundle.num_classes:
        raise ValueError(f"class {j} is out of range for {bundle.num_classes} classes")
    return bundle.take_train(torch.nonzero(bundle.train_y != j).flatten())


def class_balanced_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """``per_class`` random indices of every class present in ``labels``, sorted.

    Args:
        labels: (N,) integer labels.
        per_class: examples drawn (without replacement) from each class.
        seed: seed of the private generator; same seed, same indices.

    Returns:
        (K * per_class,) int64 indices into ``labels`` in increasing order.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ClasswiseError(
                f"class {c} has only {len(members)} examples, fewer than the {per_class} "
                "per class requested; ask for fewer per class."
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values.to(torch.int64)


def subsample_train(bundle: DataBundle | StreamBundle, examples: int, seed: int) -> DataBundle | StreamBundle:
    """A copy keeping a class-balanced, seeded sample of about ``examples`` training images.

    Used for quick runs (``data.train_examples``); the test split is unchanged (a
    ``StreamBundle`` keeps the chosen files, nothing is decoded).
    """
    per_class = max(1, examples // bundle.num_classes)
    return bundle.take_train(class_balanced_indices(bundle.train_y, per_class, seed))
