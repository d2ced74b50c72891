"""The bone-suppression training loop: reproducibility, exact resumption, checkpoints, learning.

Tiny models (ResNet-BS of width 8 with 2 blocks, about 3k parameters) on 32 px synthetic pairs:
target = smooth soft tissue, source = target + a smooth periodic "rib" pattern.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cxrbs.bs.train as train_mod
from cxrbs.core.device import autocast_context, configure_threads, environment_info, select_device
from cxrbs.core.errors import CxrbsError
from cxrbs.bs.losses import CombinedLoss, msssim_settings
from cxrbs.bs.metrics import evaluate_pairs
from cxrbs.bs.predict import load_bs_model, predict_images
from cxrbs.bs.train import HISTORY_COLUMNS, TrainConfig, train_bs

MODEL = "resnet_bs"
KWARGS = {"width": 8, "n_blocks": 2, "output": "residual"}


def make_pairs(n: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = np.empty((n, 2, side, side), np.float32)
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.15)
        tissue = 0.25 + 0.3 * blob + 0.1 * rng.uniform() * xx
        theta, phase = rng.uniform(-0.4, 0.4), rng.uniform(0, 2 * np.pi)
        period = rng.uniform(0.2, 0.3)
        u = yy * np.cos(theta) + xx * np.sin(theta)
        bone = 0.15 * np.clip(np.sin(2 * np.pi * u / period + phase), 0, None) ** 2
        out[i, 1] = tissue
        out[i, 0] = np.clip(tissue + bone, 0, 1)
    return out


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_pairs(12, 32, 1), make_pairs(4, 32, 2), make_pairs(6, 32, 3)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg(**kw) -> TrainConfig:
    base = dict(
        epochs=2, batch_size=4, lr=2e-3, crop_size=24, threads=1, device="cpu", lr_patience=1
    )
    base.update(kw)
    return TrainConfig(**base)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_gives_bitwise_identical_weights(data, tmp_path) -> None:
    tr, va, _ = data
    train_bs(MODEL, KWARGS, tr, va, cfg(), tmp_path / "a", progress=False)
    train_bs(MODEL, KWARGS, tr, va, cfg(), tmp_path / "b", progress=False)
    train_bs(MODEL, KWARGS, tr, va, cfg(seed=14), tmp_path / "c", progress=False)
    a, b, c = (load_state(tmp_path / d / "last.pt") for d in "abc")
    assert_same_weights(a, b)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters
    ha = pd.read_csv(tmp_path / "a" / "history.csv")
    hb = pd.read_csv(tmp_path / "b" / "history.csv")
    assert ha[["loss", "val_loss", "lr"]].equals(hb[["loss", "val_loss", "lr"]])


def test_resume_after_kill_reproduces_uninterrupted_run(
    data, tmp_path, monkeypatch, caplog
) -> None:
    tr, va, _ = data
    # lr halves on any non-improving epoch, so the scheduler's memory of the best val loss matters
    # (at lr 5e-3 epoch 5 is worse than epoch 3 but better than a forgotten best of inf).
    c = cfg(epochs=6, lr=5e-3, lr_patience=0, steps_per_epoch=2)
    train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "a", progress=False)

    real_epoch = train_mod._train_epoch
    computed: list[int] = []

    def killed_in_epoch_5(run, epoch):
        if epoch == 5:
            raise KeyboardInterrupt  # the process dies mid-epoch
        computed.append(epoch)
        return real_epoch(run, epoch)

    monkeypatch.setattr(train_mod, "_train_epoch", killed_in_epoch_5)
    with pytest.raises(KeyboardInterrupt):
        train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "b", progress=False)
    assert computed == [1, 2, 3, 4]
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 4
    assert len(pd.read_csv(tmp_path / "b" / "history.csv")) == 4

    def spy(run, epoch):
        computed.append(epoch)
        return real_epoch(run, epoch)

    monkeypatch.setattr(train_mod, "_train_epoch", spy)
    computed.clear()
    with caplog.at_level(logging.INFO, logger="cxrbs.bs.train"):
        summary = train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "b", progress=False)
    assert computed == [5, 6]
    assert "resuming from epoch 4" in caplog.text
    assert summary["epochs_run"] == 6
    for name in ("last.pt", "best.pt"):
        assert_same_weights(load_state(tmp_path / "a" / name), load_state(tmp_path / "b" / name))
    ha = pd.read_csv(tmp_path / "a" / "history.csv")
    hb = pd.read_csv(tmp_path / "b" / "history.csv")
    assert ha["epoch"].tolist() == hb["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert ha[["loss", "val_loss", "lr"]].equals(hb[["loss", "val_loss", "lr"]])
    assert hb["lr"].iloc[-1] < c.lr  # the schedule did act, so restoring it was tested

    # Asking for more epochs extends the same run rather than starting over.
    computed.clear()
    longer = cfg(epochs=7, lr=5e-3, lr_patience=0, steps_per_epoch=2)
    train_bs(MODEL, KWARGS, tr, va, longer, tmp_path / "b", progress=False)
    assert computed == [7]


def test_changed_settings_start_fresh(data, tmp_path, caplog) -> None:
    tr, va, _ = data
    train_bs(MODEL, KWARGS, tr, va, cfg(epochs=2), tmp_path, progress=False)
    with caplog.at_level(logging.INFO, logger="cxrbs.bs.train"):
        train_bs(MODEL, KWARGS, tr, va, cfg(epochs=1, lr=1e-3), tmp_path, progress=False)
    assert "not resuming" in caplog.text and "config.lr: 0.002 -> 0.001" in caplog.text
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["epoch"].tolist() == [1] and hist["lr"].tolist() == [1e-3]
    fresh = tmp_path.parent / (tmp_path.name + "_fresh")
    train_bs(MODEL, KWARGS, tr, va, cfg(epochs=1, lr=1e-3), fresh, progress=False)
    assert_same_weights(load_state(tmp_path / "last.pt"), load_state(fresh / "last.pt"))


class NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * float("nan")

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())


def test_non_finite_loss_raises_with_advice(data, tmp_path, monkeypatch) -> None:
    tr, va, _ = data
    monkeypatch.setattr(train_mod, "_build_model", lambda name, kwargs, seed: NaNModel())
    with pytest.raises(CxrbsError, match=r"epoch 1, step 1.*learning rate.*amp"):
        train_bs("nan_model", {}, tr, va, cfg(), tmp_path, progress=False)


class PenalisedModel(nn.Module):
    """A local model (not in the registry) whose penalty is a known constant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.conv(x)

    def penalty(self) -> torch.Tensor:
        return 0.25 + 0.0 * self.conv.weight.sum()


def test_val_loss_is_combined_loss_plus_penalty(data, tmp_path, monkeypatch) -> None:
    """With crop_size None validation sees whole images; the penalty is part of the loss."""
    tr, va, _ = data
    monkeypatch.setattr(train_mod, "_build_model", lambda name, kwargs, seed: PenalisedModel())
    train_bs("local", {}, tr, va, cfg(crop_size=None, val_batch_size=3), tmp_path, progress=False)
    model = PenalisedModel()
    model.load_state_dict(load_state(tmp_path / "last.pt"))
    x, y = torch.from_numpy(va[:, :1]), torch.from_numpy(va[:, 1:])
    with torch.no_grad():
        expected = float(CombinedLoss()(model(x), y)) + 0.25
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-5)
    assert (hist["loss"] > 0.25).all()


def test_early_stopping_and_lr_schedule(data, tmp_path, monkeypatch) -> None:
    tr, va, _ = data
    # Validation never improves after epoch 1.
    monkeypatch.setattr(train_mod, "_validate", lambda run, epoch: (0.5, 0.0))
    c = cfg(epochs=10, early_stopping_patience=3, lr_patience=0, lr=1e-3, min_lr=3e-4)
    summary = train_bs(MODEL, KWARGS, tr, va, c, tmp_path, progress=False)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3, 4]
    assert hist["lr"].tolist() == pytest.approx([1e-3, 1e-3, 5e-4, 3e-4])
    assert summary["stopped_early"] and summary["epochs_run"] == 4 and summary["best_epoch"] == 1
    written = json.loads((tmp_path / "train_summary.json").read_text())
    assert written["stop_reason"].startswith("early")
    # Calling again resumes a finished run and trains nothing more.
    summary2 = train_bs(MODEL, KWARGS, tr, va, c, tmp_path, progress=False)
    assert summary2["epochs_run"] == 4 and len(pd.read_csv(tmp_path / "history.csv")) == 4


def test_checkpoints_load_weights_only_with_metadata(data, tmp_path) -> None:
    tr, va, _ = data
    summary = train_bs(MODEL, KWARGS, tr, va, cfg(epochs=2), tmp_path, progress=False)
    meta_keys = {
        "model_name", "model_kwargs", "config", "seed", "versions", "device", "epoch",
        "best_val_loss", "crop_size", "msssim", "model_state",
    }
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert meta_keys <= best.keys()
    resume_keys = {"optimizer_state", "scheduler_state", "bad_epochs", "history"}
    assert meta_keys | resume_keys <= last.keys()
    assert best["model_name"] == MODEL and best["model_kwargs"] == KWARGS
    assert best["config"]["crop_size"] == 24 and best["seed"] == 13
    win24, weights24 = msssim_settings(24)
    assert best["msssim"]["train"] == {"side": 24, "win_size": win24, "weights": weights24}
    assert len(weights24) == 2 and best["val_side"] == 32
    assert best["versions"]["torch"] == torch.__version__
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist.columns) == HISTORY_COLUMNS and len(hist) == 2
    assert best["best_val_loss"] == pytest.approx(hist["val_loss"].min())
    written = json.loads((tmp_path / "train_summary.json").read_text())
    assert written == json.loads(json.dumps(summary))

    model, meta = load_bs_model(tmp_path / "best.pt")
    assert not model.training and meta["epoch"] == best["epoch"] and "model_state" not in meta
    assert_same_weights(model.state_dict(), best["model_state"])

    with pytest.raises(CxrbsError, match="missing.pt"):
        load_bs_model(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CxrbsError, match="corrupt.pt"):
        load_bs_model(bad)


def test_predict_images_streams_and_clips(data) -> None:
    _, _, te = data
    model = PenalisedModel()
    with torch.no_grad():
        model.conv.bias.fill_(-0.5)  # prediction = x + 0.5: overshoots above 1
    src = te[:, 0]
    out = predict_images(model, src, batch_size=4)
    assert out.shape == src.shape and out.dtype == np.float32
    assert np.allclose(out, np.clip(src + 0.5, 0, 1), atol=1e-6)
    as_uint16 = np.round(src * 65535).astype(np.uint16)
    assert np.allclose(predict_images(model, as_uint16, batch_size=5), out, atol=1e-4)
    assert model.training  # the caller's mode is restored
    with pytest.raises(CxrbsError, match=r"\(N,H,W\)"):
        predict_images(model, src[0])


def test_residual_model_beats_identity_baseline(data, tmp_path) -> None:
    tr, va, te = data
    path = tmp_path / "train.npy"
    np.save(path, np.round(tr * 65535).astype(np.uint16))
    train_mm = np.load(path, mmap_mode="r")  # the prepared-stack format, read batch by batch
    c = cfg(epochs=10, lr=3e-3, crop_size=None)
    train_bs(MODEL, KWARGS, train_mm, va, c, tmp_path, progress=False)
    model, _ = load_bs_model(tmp_path / "best.pt")
    names = [f"t{i}" for i in range(len(te))]
    trained = evaluate_pairs(lambda x: predict_images(model, x), te, names)
    identity = evaluate_pairs(None, te, names)
    assert trained["psnr"].mean() > identity["psnr"].mean() + 2.0
    assert trained["bsr_energy"].mean() > 0.3


def test_config_and_device_errors(data, tmp_path) -> None:
    tr, va, _ = data
    with pytest.raises(CxrbsError, match="crop_size=40"):
        train_bs(MODEL, KWARGS, tr, va, cfg(crop_size=40), tmp_path, progress=False)
    with pytest.raises(CxrbsError, match="classifier"):
        train_bs("vgg16", {}, tr, va, cfg(), tmp_path, progress=False)
    with pytest.raises(CxrbsError, match=r"\(N,2,H,W\)"):
        train_bs(MODEL, KWARGS, tr[:, :1], va, cfg(), tmp_path, progress=False)
    with pytest.raises(CxrbsError, match="unknown training setting"):
        TrainConfig.from_mapping({"epochs": 3, "learning_rate": 0.1})
    assert TrainConfig.from_mapping({"epochs": 3}).epochs == 3
    with pytest.raises(CxrbsError, match="amp"):
        cfg(amp="fp8").validate()

    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CxrbsError, match="device"):
        select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(CxrbsError, match="no CUDA"):
            select_device("cuda")
        with pytest.raises(CxrbsError, match="fp16"):
            autocast_context(torch.device("cpu"), "fp16")
    with autocast_context(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_context(torch.device("cpu"), "none"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(CxrbsError, match="threads"):
        configure_threads(0)
    info = environment_info(torch.device("cpu"))
    assert {"python", "torch", "numpy", "cxrbs", "device", "device_name", "threads"} <= info.keys()
