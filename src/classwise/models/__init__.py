"""Model registry: smallcnn, resnet18, preact_resnet18, wideresnet, resnet50.

Every model maps [0, 1] images (B, C, H, W) to logits (B, K), normalises inside
(``mean``/``std`` buffers), and exposes ``features(x)`` (B, D) and ``head``.
"""

from .base import Classifier, Normalize
from .registry import create_model, model_kwargs, model_names

__all__ = ["Classifier", "Normalize", "create_model", "model_kwargs", "model_names"]
