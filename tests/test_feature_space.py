"""Pooled features, cluster-separation scores and t-SNE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cxrbs.core.errors import CxrbsError
from cxrbs.explain.feature_space import cluster_scores, extract_features, tsne_embedding


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()
        )
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(5, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(f.mean(dim=(2, 3))))


def _blobs(distance: float, n: int = 40, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, (n // 2, dim))
    b = rng.normal(0.0, 1.0, (n - n // 2, dim))
    b[:, 0] += distance
    return np.vstack([a, b]), np.array([0] * (n // 2) + [1] * (n - n // 2))


def test_extract_features_is_gap_of_forward_features() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    images = np.random.default_rng(1).random((5, 9, 7)).astype(np.float32)
    feats = extract_features(model, images, batch_size=2)
    assert feats.shape == (5, 5)
    assert model.training  # mode restored
    with torch.no_grad():
        model.eval()
        x = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1)
        expected = model.forward_features(x).mean(dim=(2, 3)).numpy()
    assert np.allclose(feats, expected, atol=1e-6)


def test_extract_features_single_channel_model() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    model.features[0] = nn.Conv2d(1, 4, 3, padding=1)
    images = np.random.default_rng(2).random((3, 6, 6)).astype(np.float32)
    feats = extract_features(model, images)
    with torch.no_grad():
        expected = model.forward_features(torch.from_numpy(images)[:, None]).mean(dim=(2, 3))
    assert np.allclose(feats, expected.numpy(), atol=1e-6)


def test_cluster_scores_separated_vs_overlapping() -> None:
    feats, labels = _blobs(distance=12.0)
    sep = cluster_scores(feats, labels)
    assert sep["silhouette"] > 0.5
    assert sep["davies_bouldin"] < 1.0
    feats2, labels2 = _blobs(distance=0.5)
    mixed = cluster_scores(feats2, labels2)
    assert mixed["silhouette"] < sep["silhouette"] - 0.3
    assert mixed["davies_bouldin"] > sep["davies_bouldin"]


def test_cluster_scores_undefined_cases_are_nan() -> None:
    feats, _ = _blobs(distance=5.0, n=10)
    one_class = cluster_scores(feats, np.zeros(10))
    assert math.isnan(one_class["silhouette"]) and math.isnan(one_class["davies_bouldin"])
    tiny = cluster_scores(feats[:2], np.array([0, 1]))
    assert math.isnan(tiny["silhouette"]) and math.isnan(tiny["davies_bouldin"])


def test_tsne_shape_and_determinism() -> None:
    feats, _ = _blobs(distance=6.0, n=40)
    first = tsne_embedding(feats, seed=3)
    second = tsne_embedding(feats, seed=3)
    assert first.shape == (40, 2)
    assert np.all(np.isfinite(first))
    assert np.array_equal(first, second)


def test_tsne_small_n_and_bad_perplexity() -> None:
    feats, _ = _blobs(distance=6.0, n=6)
    assert tsne_embedding(feats, seed=0).shape == (6, 2)  # default perplexity (6-1)/3 is valid
    with pytest.raises(CxrbsError, match="at least 5"):
        tsne_embedding(feats[:4], seed=0)
    with pytest.raises(CxrbsError, match="perplexity"):
        tsne_embedding(feats, seed=0, perplexity=10)
