"""Model registry: smallcnn, resnet18, preact_resnet18, wideresnet, resnet50.

Every model maps [0, 1] images (B, C, H, W) to logits (B, K), normalises inside
(``mean``/``std`` buffers), and exposes ``features(x)`` (B, D) and ``head``.
``use_he_head`` swaps the linear head for the hypersphere-embedding head.
"""

from .base import Classifier, Normalize, unwrap
from .he import HEHead, margin_logits, use_he_head
from .outside import Normalized, classifier_layer, normalized, split_spec
from .registry import create_model, model_kwargs, model_names, outside_kinds

__all__ = [
    "Classifier", "HEHead", "Normalize", "create_model", "margin_logits", "model_kwargs", "model_names",
    "unwrap", "use_he_head", "Normalized", "classifier_layer", "normalized", "outside_kinds",
    "split_spec",
]
