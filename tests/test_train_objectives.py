"""Validation follows the training objective; ImageNet weights see ImageNet-normalised inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cxrbs.bs.losses import CombinedLoss, msssim_settings
from cxrbs.bs.train import TrainConfig, train_bs
from cxrbs.cls.train_setup import imagenet_kwargs
from cxrbs.models import create_model
from cxrbs.models.base import IMAGENET_MEAN, IMAGENET_STD
from cxrbs.models.checkpoint import header, load_checkpoint, save_checkpoint


def pairs(n: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tissue = rng.uniform(0.2, 0.6, (n, 1, side, side)).astype(np.float32)
    return np.concatenate([np.clip(tissue + 0.2, 0, 1), tissue], axis=1)


def test_validation_msssim_uses_the_training_crop_settings(tmp_path, monkeypatch) -> None:
    """Crop 24 trains with fewer scales than a 48 px validation crop would pick on its own."""
    tr, va = pairs(6, 64, 1), pairs(3, 64, 2)
    assert msssim_settings(24) != msssim_settings(48)
    cfg = TrainConfig(epochs=1, batch_size=3, crop_size=24, threads=1, device="cpu",
                      val_batch_size=3)  # fmt: skip
    train_bs("resnet_bs", {"width": 4, "n_blocks": 1, "output": "residual"}, tr, va, cfg,
             tmp_path, progress=False)  # fmt: skip
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["val_side"] == 48
    assert best["msssim"]["val"]["win_size"] == best["msssim"]["train"]["win_size"]
    assert best["msssim"]["val"]["weights"] == best["msssim"]["train"]["weights"]
    model, _ = load_checkpoint(tmp_path / "best.pt", expect="bs")
    x = torch.from_numpy(va[:, :1, 8:56, 8:56].copy())
    y = torch.from_numpy(va[:, 1:, 8:56, 8:56].copy())
    with torch.no_grad():
        pred = model(x)
    expected = float(CombinedLoss(settings_side=24)(pred, y))
    other = float(CombinedLoss()(pred, y))
    assert abs(expected - other) > 1e-6  # the two objectives do differ here
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-5)


def test_imagenet_weights_switch_on_imagenet_normalisation() -> None:
    assert imagenet_kwargs("vgg16", {})["imagenet_norm"] is True
    assert imagenet_kwargs("vgg16_bn", {"dropout": 0.3}) == {"dropout": 0.3, "imagenet_norm": True}
    assert "imagenet_norm" not in imagenet_kwargs("small_cnn", {"widths": [4, 8]})
    plain = create_model("vgg16", seed=0).eval()
    normed = create_model("vgg16", seed=0, imagenet_norm=True).eval()
    assert plain.state_dict().keys() == normed.state_dict().keys()  # checkpoints unchanged
    grey = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    manual = (grey.expand(-1, 3, -1, -1) - mean) / std
    with torch.no_grad():
        torch.testing.assert_close(normed.forward_features(grey), plain.forward_features(manual))
        assert not torch.allclose(plain.forward_features(grey), normed.forward_features(grey))


def test_imagenet_normalisation_survives_the_checkpoint(tmp_path) -> None:
    model = create_model("vgg16", seed=0, imagenet_norm=True).eval()
    head = header(kind="cls", model_name="vgg16", model_kwargs={"imagenet_norm": True},
                  input_size=32, seed=0, versions={})  # fmt: skip
    save_checkpoint(tmp_path / "model.pt", head, model.state_dict())
    loaded, meta = load_checkpoint(tmp_path / "model.pt", expect="cls")
    assert loaded.imagenet_norm and meta["model_kwargs"] == {"imagenet_norm": True}
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
