"""Two-dimensional t-SNE of penultimate features (appendix D, figure 8)."""

from __future__ import annotations

import numpy as np


def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE embedding (van der Maaten and Hinton, 2008) of features (N, D) -> (N, 2) float64.

    Uses ``sklearn.manifold.TSNE`` with PCA initialisation and a fixed seed;
    the perplexity is capped at (N - 1) / 3 so small samples work. Run it
    separately on natural and on adversarial features, as figure 8 does.
    """
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE needs features (N >= 4, D), got shape {x.shape}")
    perp = float(min(perplexity, (x.shape[0] - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    return tsne.fit_transform(x).astype(np.float64)
