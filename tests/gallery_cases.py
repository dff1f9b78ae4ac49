"""Results with saved adversarial images for the gallery tests (with and without a browser)."""

from __future__ import annotations

import numpy as np

from classwise.report.gallery import GalleryData
from classwise.results import EvalResults

K, PER = 6, 12


def gallery_case(k: int = K, per: int = PER, seed: int = 0) -> tuple[EvalResults, GalleryData]:
    """Results of ``k`` classes (class c robust with chance (c + 1) / (k + 1)) and saved images of every other example."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per)
    robust = rng.random(k * per) < ((labels + 1) / (k + 1))
    adv = np.where(robust, labels, (labels + 1) % k)
    res = EvalResults(labels, labels.copy(), {"fgsm": labels.copy(), "pgd20": adv}, [f"c{i}" for i in range(k)])
    idx = np.arange(0, k * per, 2)
    clean = rng.random((len(idx), 3, 8, 8)).astype(np.float32)
    noise = rng.uniform(-8 / 255, 8 / 255, clean.shape).astype(np.float32)
    return res, GalleryData("pgd20", idx, clean, np.clip(clean + noise, 0, 1), rng.random(len(idx)))
