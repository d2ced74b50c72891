"""Feature-space view of a classifier: pooled deep features, cluster-separation scores, t-SNE.

Used to show whether bone suppression makes the TB / normal classes easier to separate in the
model's own representation, independently of the decision threshold.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from cxrbs.explain.crm import eval_mode
from cxrbs.core.errors import CxrbsError

MIN_TSNE_SAMPLES = 5


def _input_channels(model: nn.Module) -> int:
    """Channels the first convolution expects (3 for ImageNet-style classifiers)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return 3


def extract_features(model: nn.Module, images: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """Global-average-pooled ``forward_features`` of gray images (N, H, W) in [0, 1] -> (N, C).

    Gray images are repeated over the channels the first conv wants, as done for training.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    channels = _input_channels(model)
    chunks: list[np.ndarray] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size], dtype=dtype, device=device)
            batch = batch[:, None].expand(-1, channels, -1, -1)
            feats = getattr(model, "forward_features")(batch)
            chunks.append(feats.mean(dim=(2, 3)).float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def cluster_scores(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Silhouette (higher = better separated) and Davies-Bouldin (lower = better) of the labels.

    Both are undefined with one class, fewer than 3 samples or one sample per class: NaN then.
    """
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"features must be (N, C) with one label per row; got {features.shape}, {labels.shape}"
        )
    n_labels = len(np.unique(labels))
    if len(features) < 3 or not 2 <= n_labels <= len(features) - 1:
        return {"silhouette": math.nan, "davies_bouldin": math.nan}
    return {
        "silhouette": float(silhouette_score(features, labels)),
        "davies_bouldin": float(davies_bouldin_score(features, labels)),
    }


def tsne_embedding(
    features: np.ndarray, *, seed: int, perplexity: float | None = None
) -> np.ndarray:
    """2-D t-SNE (PCA init, fixed seed, so reruns give the same picture).

    Default perplexity min(30, (N-1)/3) keeps it valid for small sets (it must stay below N).
    """
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, C), got shape {features.shape}")
    n = len(features)
    if n < MIN_TSNE_SAMPLES:
        raise CxrbsError(
            f"t-SNE needs at least {MIN_TSNE_SAMPLES} images, got {n}: add images to the set"
        )
    if features.shape[1] < 2:
        raise CxrbsError(
            f"t-SNE needs features with at least 2 dimensions, got {features.shape[1]}"
        )
    if perplexity is None:
        perplexity = min(30.0, (n - 1) / 3)
    if not 0 < perplexity < n:
        raise CxrbsError(f"perplexity must be in (0, {n}) for {n} images, got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(features).astype(np.float64)
