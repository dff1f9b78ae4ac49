"""What :func:`classwise.evaluate.evaluate` refuses to measure, each with one clear sentence.

A number is only as good as its inputs: a [0, 255] float tensor passed as
images, labels of another class table, or a model with a different number of
outputs give plausible but wrong class-wise numbers. These checks run before
any attack (:func:`check_eval_inputs`, :func:`check_logits` on a first batch)
and on every logit the evaluation keeps (:func:`check_logits`); each raises
``ValueError`` with one sentence naming what is wrong and what to pass instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn


def check_eval_inputs(images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None) -> int | None:
    """Refuse images, labels and class names that cannot be evaluated; return K (None: from the logits).

    images: (N, C, H, W) uint8, or float in [0, 1]; labels: (N,) integers in
    [0, K), K = ``len(class_names)`` when given.
    """
    _check_images(images)
    _check_labels(labels, len(images))
    if class_names is None:
        return None
    k = len(class_names)
    if k < 1:
        raise ValueError("class_names is empty: give one name per class (K names for K logits)")
    top = int(labels.max())
    if top >= k:
        raise ValueError(f"labels must be in [0, {k}) for the {k} class_names, but the largest label is {top}")
    return k


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}; "
                         "add a channel axis for greyscale images (x.unsqueeze(1))")
    if images.device.type == "meta":
        raise ValueError("images are on the meta device (shapes without data): load the real tensors first")
    if len(images) == 0:
        raise ValueError("the evaluation set is empty (0 images): pass at least one image")
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}")
    inside = ((images >= 0) & (images <= 1)).all()  # False for NaN too
    if not bool(inside):
        lo, hi = float(images.nan_to_num(nan=-1.0).min()), float(images.nan_to_num(nan=2.0).max())
        raise ValueError(f"float images must be in [0, 1] (found values in [{lo:g}, {hi:g}]); "
                         "divide [0, 255] images by 255, or pass them as uint8, and undo any normalisation "
                         "(it belongs inside the model)")


def _check_labels(labels: torch.Tensor, n: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor (N,), got {type(labels).__name__}")
    if labels.device.type == "meta":
        raise ValueError("labels are on the meta device (shapes without data): load the real tensor first")
    if labels.dim() != 1:
        raise ValueError(f"labels must be one class index per image (N,), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"images and labels differ in length ({n} images, {len(labels)} labels)")
    low = int(labels.min())
    if low < 0:
        raise ValueError(f"labels must be class indices >= 0, but the smallest label is {low}")


def check_image_dtype(images: torch.Tensor, model: nn.Module) -> None:
    """Refuse float images of another dtype than the model's weights (float64 numpy arrays, say)."""
    weights = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weights is not None and images.is_floating_point() and images.dtype != weights.dtype:
        raise ValueError(f"images are {images.dtype} but the model's weights are {weights.dtype}: "
                         f"pass images.to({weights.dtype}) (or uint8 images, converted for you)")


def check_eps(eps: object) -> None:
    """Refuse an eps that is not a finite number >= 0 (or None), e.g. the text "8/255"."""
    if eps is None:
        return
    if isinstance(eps, str):
        raise ValueError(f"eps must be a number, got the text {eps!r}: write it as a Python number (eps=8/255)")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= float(eps) < float("inf"):
        raise ValueError(f"eps must be a finite number >= 0 (e.g. 8/255), got {eps!r}")


def check_logits(logits: torch.Tensor, k: int | None, labels: torch.Tensor, what: str = "clean images") -> int:
    """Refuse model outputs that are not (B, K) finite floating logits; return K.

    K is ``k`` (from class_names) when given, else the logits' width, which must
    exceed every label.
    """
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the model must return one logits tensor (B, K), got a {type(logits).__name__} on {what}; "
                         "wrap it so that forward returns the logits only (e.g. out[0] of a tuple)")
    if not logits.is_floating_point():
        raise ValueError(f"the model returned {logits.dtype} outputs on {what}: attacks need floating logits "
                         "(B, K) with gradients, not class indices or rounded scores")
    if logits.dim() != 2 or len(logits) != len(labels):
        raise ValueError(f"the model must return logits (B, K) for B images, got shape {tuple(logits.shape)} "
                         f"for {len(labels)} images on {what}")
    width = logits.shape[1]
    if k is not None and width != k:
        raise ValueError(f"the model returns {width} logits per image but class_names has {k} classes")
    if k is None and int(labels.max()) >= width:
        raise ValueError(f"the model returns {width} logits per image but the labels go up to "
                         f"{int(labels.max())}; give class_names or labels in [0, {width})")
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).any(1).sum())
        raise ValueError(f"the model returned NaN or Inf logits for {bad} of {len(logits)} images on {what}; "
                         "its weights or inputs are not finite (did training diverge?)")
    return width
