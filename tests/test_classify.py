"""Classifier training loop, checkpoints and on-the-fly augmentation, on a tiny blob task.

Class 1 images carry a bright blob in their upper half; 24 patients with 2 images each at 32².
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from cxrbs.cls.augment import mix_batch
from cxrbs.cls.train import (
    ClsTrainConfig,
    augment_batch,
    load_classifier,
    predict_proba,
    train_classifier,
)
from cxrbs.core.errors import CxrbsError
from cxrbs.estimate import same_recipe
from cxrbs.training.ema import ema_of as _ema_of
from cxrbs.models import create_model, registry
from cxrbs.data.preprocess import to_uint16

MODEL = "small_cnn"
KWARGS: dict[str, Any] = {"widths": [4, 8, 8, 8]}
HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_auc", "val_acc", "lr", "seconds",
                   "images_per_s"]  # fmt: skip


def blob_data(n_patients: int = 24, per_patient: int = 2, size: int = 32, seed: int = 0):
    """Images, labels (patient parity), patient ids; noise everywhere, a blob for class 1."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_patients), per_patient)
    y = ids % 2
    yy, xx = np.mgrid[:size, :size]
    imgs = rng.uniform(0.2, 0.4, (ids.size, size, size))
    for i in np.flatnonzero(y):
        cy, cx = rng.uniform(4, size / 2 - 4), rng.uniform(6, size - 6)
        imgs[i] += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    return np.clip(imgs, 0, 1).astype(np.float32), y, ids.astype(str)


def config(**kw: Any) -> ClsTrainConfig:
    base = dict(epochs=3, batch_size=8, optimizer="adamw", lr=1e-2, val_fraction=0.25, seed=1,
                threads=1, device="cpu")  # fmt: skip
    return ClsTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data():
    return blob_data()


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    imgs, y, ids = data
    out = tmp_path_factory.mktemp("cls")
    summary = train_classifier(MODEL, KWARGS, imgs, y, ids, config(epochs=5), out, progress=False)
    return out, summary


def params(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_training_writes_checkpoint_history_and_patient_split(trained, data) -> None:
    out, summary = trained
    _, y, ids = data
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["model_name"] == MODEL and ckpt["model_kwargs"] == KWARGS
    assert ckpt["init"] == "random" and ckpt["image_size"] == 32
    assert ckpt["config"]["optimizer"] == "adamw" and "torch" in ckpt["versions"]
    # the recipe in the summary: what the run estimate compares a config with (same_recipe)
    on_disk = json.loads((out / "train_summary.json").read_text())
    assert on_disk["settings"]["epochs"] == 5 and on_disk["settings"]["optimizer"] == "adamw"
    assert same_recipe(out, {"epochs": 5, "optimizer": "adamw"}) is True
    assert same_recipe(out, {"epochs": 6}) is False
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == list(range(1, summary["epochs_run"] + 1))
    best = history.loc[history["val_loss"].idxmin()]
    assert ckpt["best_epoch"] == best["epoch"] == summary["best_epoch"]
    assert math.isclose(ckpt["best_val_loss"], best["val_loss"], rel_tol=1e-6)
    split = pd.read_csv(out / "split.csv", dtype={"patient_id": str})
    assert split["index"].tolist() == list(range(y.size))
    assert (split["label"].to_numpy() == y).all() and (split["patient_id"] == ids).all()
    val_pat = set(split.loc[split["split"] == "val", "patient_id"])
    train_pat = set(split.loc[split["split"] == "train", "patient_id"])
    assert not val_pat & train_pat and len(val_pat) == 6  # 25 % of 24 patients
    assert json.loads((out / "train_summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["n_val"] == 12 and summary["n_train"] == 36


def test_small_cnn_learns_the_blob_task_and_checkpoint_keeps_the_best_state(
    data, tmp_path: Path
) -> None:
    imgs, y, ids = data
    out = tmp_path
    t0 = time.perf_counter()
    summary = train_classifier(MODEL, KWARGS, imgs, y, ids, config(epochs=5), out, progress=False)
    assert time.perf_counter() - t0 < 15
    assert summary["best_val_auc"] > 0.8
    # Reloaded best model reproduces the recorded validation AUC, computed here independently.
    model, meta = load_classifier(out / "model.pt")
    val = pd.read_csv(out / "split.csv")["split"].eq("val").to_numpy()
    prob = predict_proba(model, imgs[val], batch_size=5)
    assert math.isclose(roc_auc_score(y[val], prob), meta["best_val_auc"], abs_tol=1e-9)
    # A uint16 (N,1,H,W) stack gives the same probabilities as the float images.
    prob16 = predict_proba(model, to_uint16(imgs[val])[:, None])
    np.testing.assert_allclose(prob16, prob, atol=1e-3)


def test_same_seed_gives_identical_weights_and_warns_about_random_init(
    data, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    imgs, y, ids = data
    states = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        with caplog.at_level(logging.WARNING, logger="cxrbs.cls.train"):
            train_classifier(MODEL, KWARGS, imgs, y, ids, config(epochs=2, seed=seed),
                             tmp_path / name, progress=False)  # fmt: skip
        states.append(torch.load(tmp_path / name / "model.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])
    warnings = [r.getMessage() for r in caplog.records if "random initialisation" in r.getMessage()]
    assert len(warnings) == 3  # once per run, not per epoch


class ConstantLogits(nn.Module):
    """Ignores the image: the failure mode collapse detection must catch."""

    def __init__(self, *, value: float = 0.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        return self.bias.expand(x.shape[0], 2) + self.value + 0.0 * x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture()
def constant_model(monkeypatch: pytest.MonkeyPatch) -> str:
    # Registered only for this test, so the registry-wide model tests never see it.
    monkeypatch.setitem(registry._REGISTRY, "constant_test", registry._Entry(ConstantLogits, "cls"))
    return "constant_test"


def test_collapse_raises_and_leaves_no_model(data, tmp_path: Path, constant_model: str) -> None:
    imgs, y, ids = data
    (tmp_path / "model.pt").write_bytes(b"stale result of an older run")
    cfg = config(epochs=6, collapse_patience=2, early_stopping_patience=5)
    with pytest.raises(CxrbsError, match=r"collapsed.*for 2 epochs.*cls\.finetune\.lr"):
        train_classifier(constant_model, {}, imgs, y, ids, cfg, tmp_path, progress=False,
                         stage="finetune")  # fmt: skip
    assert not (tmp_path / "model.pt").exists()
    # Epoch 1 is never judged (issue 15), so a streak of 2 judged epochs ends at epoch 3.
    assert len(pd.read_csv(tmp_path / "history.csv")) == 3


def test_collapse_is_caught_when_early_stopping_ends_first(
    data, tmp_path: Path, constant_model: str
) -> None:
    imgs, y, ids = data
    cfg = config(epochs=6, collapse_patience=5, early_stopping_patience=1)
    with pytest.raises(CxrbsError, match="collapsed"):
        train_classifier(constant_model, {}, imgs, y, ids, cfg, tmp_path, progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_smoke_runs_may_switch_the_collapse_check_off(
    data, tmp_path: Path, constant_model: str
) -> None:
    """config/paper_smoke.yaml: a few steps of a random VGG-16 are near-constant by design."""
    imgs, y, ids = data
    cfg = config(epochs=2, collapse_patience=1, collapse_check=False)
    train_classifier(constant_model, {}, imgs, y, ids, cfg, tmp_path, progress=False)
    assert (tmp_path / "model.pt").is_file()


def test_non_finite_loss_is_an_error(data, tmp_path: Path, constant_model: str) -> None:
    imgs, y, ids = data
    with pytest.raises(CxrbsError, match="loss became nan"):
        train_classifier(constant_model, {"value": float("nan")}, imgs, y, ids, config(),
                         tmp_path, progress=False)  # fmt: skip
    assert not (tmp_path / "model.pt").exists()


def test_fine_tuning_starts_from_the_checkpoint(trained, data, tmp_path: Path) -> None:
    out, _ = trained
    imgs, y, ids = data
    source, _ = load_classifier(out / "model.pt")
    cfg = config(epochs=1, lr=1e-12, weight_decay=0.0, val_fraction=0.45, seed=7)
    summary = train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path,
                               init_checkpoint=out / "model.pt", progress=False)  # fmt: skip
    assert summary["init"] == f"checkpoint:{out / 'model.pt'}"
    tuned, meta = load_classifier(tmp_path / "model.pt")
    assert meta["init"] == summary["init"]
    before, after = params(source), params(tuned)
    fresh = params(create_model(MODEL, seed=7, **KWARGS))
    for k in before:
        torch.testing.assert_close(after[k], before[k], atol=1e-6, rtol=0)
    assert max(float((fresh[k] - before[k]).abs().max()) for k in before) > 0.01
    # A checkpoint of another architecture is refused, naming the file.
    with pytest.raises(CxrbsError, match="model.pt.*model_kwargs"):
        train_classifier(MODEL, {"widths": [4, 8, 8, 16]}, imgs, y, ids, cfg, tmp_path / "x",
                         init_checkpoint=out / "model.pt", progress=False)  # fmt: skip


def test_torchvision_weights_are_loaded_and_recorded(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    donor = create_model(MODEL, seed=99, **KWARGS)
    weights = tmp_path / "fake_imagenet.pth"
    torch.save(donor.state_dict(), weights)
    cfg = config(epochs=1, lr=1e-12, weight_decay=0.0)
    summary = train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path / "run",
                               torchvision_weights=weights, progress=False)  # fmt: skip
    assert summary["init"] == "imagenet:fake_imagenet.pth"
    assert summary["init_detail"]["loaded"] == len(
        [k for k in donor.state_dict() if k.startswith("features.")]
    )
    model, _ = load_classifier(tmp_path / "run" / "model.pt")
    got, want = params(model), params(donor)
    for k in got:
        if k.startswith("features."):
            torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=0)
    fc_seeded = create_model(MODEL, seed=1, **KWARGS).fc.weight  # fc is never taken from the file
    torch.testing.assert_close(got["fc.weight"], fc_seeded.detach(), atol=1e-6, rtol=0)


def test_warmup_then_cosine_schedule_with_bf16_and_channels_last(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    cfg = config(epochs=4, warmup_epochs=2, schedule="cosine", min_lr=0.0, lr=0.01,
                 amp="bf16", channels_last=True, label_smoothing=0.1, steps_per_epoch=2,
                 early_stopping_patience=5)  # fmt: skip
    train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    # Linear warm-up over 4 steps (lr after step 2 of 4: half), then cosine over the 2 remaining
    # epochs: the full lr, then half of it.
    np.testing.assert_allclose(history["lr"], [0.005, 0.01, 0.01, 0.005], rtol=1e-9)
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()


def test_val_mask_must_split_by_patient(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    mask = np.zeros(y.size, dtype=bool)
    mask[0] = True  # patient "0" also has image 1 in training
    with pytest.raises(CxrbsError, match="both training and validation"):
        train_classifier(MODEL, KWARGS, imgs, y, ids, config(), tmp_path, val_mask=mask,
                         progress=False)  # fmt: skip


def test_config_from_dict_rejects_unknown_keys_and_merges_augment() -> None:
    cfg = ClsTrainConfig.from_dict({"lr": 0.01, "augment": {"rotation": 10}}, seed=5, threads=2)
    assert (cfg.lr, cfg.seed, cfg.threads) == (0.01, 5, 2)
    assert cfg.augment == {"rotation": 10.0, "shift": 0.2, "hflip": True}
    assert ClsTrainConfig.from_dict({}).optimizer == "sgd" and cfg.nesterov is True
    with pytest.raises(CxrbsError, match="learning_rate"):
        ClsTrainConfig.from_dict({"learning_rate": 0.01})
    with pytest.raises(CxrbsError, match="augment.zoom"):
        ClsTrainConfig.from_dict({"augment": {"zoom": 1.1}})
    with pytest.raises(CxrbsError, match="optimizer"):
        ClsTrainConfig.from_dict({"optimizer": "adam"})
    with pytest.raises(CxrbsError, match="lr"):
        ClsTrainConfig.from_dict({"lr": 0})
    with pytest.raises(CxrbsError, match="augment.shift"):
        ClsTrainConfig.from_dict({"augment": {"shift": 0.9}})


def test_load_classifier_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CxrbsError, match="missing.pt"):
        load_classifier(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CxrbsError, match="corrupt.pt"):
        load_classifier(bad)
    other = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CxrbsError, match="plain.pt.*not a classifier checkpoint"):
        load_classifier(other)


# --------------------------------------------------------------------------- augmentation


def centred_blob(n: int, size: int = 33) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((yy - size // 2) ** 2 + (xx - size // 2) ** 2) / 8.0)
    return blob.expand(n, 1, size, size).clone().float()


def centre_of_mass(x: Tensor) -> Tensor:
    """(N, 2) row/column centres of mass."""
    size = x.shape[-1]
    coords = torch.arange(size, dtype=torch.float32)
    mass = x.sum(dim=(1, 2, 3))
    rows = (x.sum(dim=(1, 3)) * coords).sum(1) / mass
    cols = (x.sum(dim=(1, 2)) * coords).sum(1) / mass
    return torch.stack([rows, cols], 1)


def test_augmentation_is_seeded_and_identity_when_off() -> None:
    x = torch.rand(8, 1, 16, 20, generator=torch.Generator().manual_seed(0))
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    off = augment_batch(x, torch.Generator().manual_seed(5), rotation=0, shift=0, hflip=False)
    assert torch.equal(off, x)


def test_flip_only_mirrors_about_half_of_the_images() -> None:
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = augment_batch(x, torch.Generator().manual_seed(2), rotation=0, shift=0, hflip=True)
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x, strict=True)]
    mirrored = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 8 <= sum(mirrored) <= 24


def test_shift_and_rotation_ranges() -> None:
    x = centred_blob(64)
    centre = centre_of_mass(x[:1])[0]
    shifted = centre_of_mass(augment_batch(x, torch.Generator().manual_seed(3), rotation=0,
                                           shift=0.2, hflip=False))  # fmt: skip
    moved = (shifted - centre).abs()
    assert moved.max() <= 0.2 * 33 + 0.5 and moved.max() > 0.1 * 33  # spans most of ±0.2·side
    line = torch.zeros(16, 1, 33, 33)
    line[:, :, 16, 4:29] = 1.0  # a bar through the centre: rotation turns it about its middle
    rotated = augment_batch(line, torch.Generator().manual_seed(3), rotation=5, shift=0,
                            hflip=False)  # fmt: skip
    torch.testing.assert_close(centre_of_mass(rotated), centre_of_mass(line), atol=0.05, rtol=0)
    assert not torch.allclose(rotated, line, atol=1e-2)
    assert torch.allclose(rotated.sum(dim=(1, 2, 3)), line.sum(dim=(1, 2, 3)), rtol=0.02)


def test_mixing_is_off_by_default_and_seeded() -> None:
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out, partner, lam = mix_batch(x, np.random.default_rng(0))
    assert out is x and lam == 1.0 and partner.tolist() == list(range(6))
    a = mix_batch(x, np.random.default_rng(3), mixup=0.4)
    b = mix_batch(x, np.random.default_rng(3), mixup=0.4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_mixup_blends_whole_images_with_the_returned_weight() -> None:
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out, partner, lam = mix_batch(x, np.random.default_rng(4), mixup=1.0)
    assert 0 < lam < 1 and sorted(partner.tolist()) == list(range(8))
    torch.testing.assert_close(out, lam * x + (1 - lam) * x[partner])


def test_cutmix_pastes_one_box_whose_area_is_one_minus_lambda() -> None:
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 20, 20).contiguous()  # image i is all i
    seen_box = False
    for seed in range(20):
        out, partner, lam = mix_batch(x, np.random.default_rng(seed), cutmix=1.0)
        for i in range(4):
            own = out[i] == i
            pasted = out[i] == partner[i].item()
            assert bool((own | pasted).all())
            if partner[i] != i:
                assert float(pasted.double().mean()) == pytest.approx(1 - lam, abs=1e-12)
                seen_box |= 0 < float(pasted.float().mean()) < 1
    assert seen_box


def test_with_mixup_and_cutmix_each_batch_takes_one_of_them() -> None:
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 12, 12).contiguous()
    kinds = set()
    for seed in range(30):
        out, partner, lam = mix_batch(x, np.random.default_rng(seed), mixup=1.0, cutmix=1.0)
        values_are_labels = bool(torch.isin(out, torch.arange(4.0)).all())
        kinds.add("cutmix" if values_are_labels else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_weight_average_ramps_its_decay_and_covers_batch_norm_statistics() -> None:
    model = create_model(MODEL, seed=0, **KWARGS)
    ema = _ema_of(model, 0.99)
    assert _ema_of(model, 0.0) is None
    ema.update_parameters(model)  # the first update copies
    key = "fc.weight"
    start = ema.module.state_dict()[key].clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.add_(1.0)
    ema.update_parameters(model)
    d = min(0.99, 2 / 11)  # second update: (1 + n) / (10 + n) with n = 1
    torch.testing.assert_close(ema.module.state_dict()[key], start + (1 - d))
    bn = "features.1.running_mean"
    torch.testing.assert_close(ema.module.state_dict()[bn], model.state_dict()[bn] - d)


def test_ema_weights_are_what_is_validated_and_saved(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    cfg = config(epochs=2, ema_decay=0.9, steps_per_epoch=3, early_stopping_patience=5)
    train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path, progress=False)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    ema_weights = {k.removeprefix("module."): v for k, v in last["ema_state"].items()
                   if k.startswith("module.")}
    assert all(torch.equal(last["model_state"][k], ema_weights[k]) for k in last["model_state"])
    assert not all(torch.equal(last["model_state"][k], last["raw_model_state"][k])
                   for k in last["model_state"])
    model, meta = load_classifier(tmp_path / "model.pt")
    assert meta["config"]["ema_decay"] == 0.9


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "mixup": 0.4, "cutmix": 1.0}],
                         ids=["plain", "ema+mixing"])
def test_killed_classifier_training_resumes_to_the_uninterrupted_result(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    extra: dict[str, float],
) -> None:
    """last.pt carries weights (and their moving average), optimiser, schedule, warm-up step,
    collapse streak and the torch RNG (dropout); mixing draws are seeded per epoch: a run killed
    in epoch 4 and rerun equals the uninterrupted one bitwise."""
    import cxrbs.cls.train as cls_train

    imgs, y, ids = data
    cfg = config(epochs=5, warmup_epochs=1, lr_patience=0, early_stopping_patience=5,
                 steps_per_epoch=3, **extra)  # fmt: skip
    train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path / "a", progress=False)
    real = cls_train._Run.train_epoch
    computed: list[int] = []

    def killed_in_epoch_4(self, epoch):
        if epoch == 4:
            raise KeyboardInterrupt
        computed.append(epoch)
        return real(self, epoch)

    monkeypatch.setattr(cls_train._Run, "train_epoch", killed_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path / "b", progress=False)
    assert computed == [1, 2, 3] and not (tmp_path / "b" / "model.pt").exists()
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 3

    def spy(self, epoch):
        computed.append(epoch)
        return real(self, epoch)

    monkeypatch.setattr(cls_train._Run, "train_epoch", spy)
    computed.clear()
    with caplog.at_level(logging.INFO, logger="cxrbs.cls.train"):
        summary = train_classifier(MODEL, KWARGS, imgs, y, ids, cfg, tmp_path / "b",
                                   progress=False)  # fmt: skip
    assert computed == [4, 5] and "resuming from epoch 3" in caplog.text
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    la = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    lb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all(torch.equal(la["model_state"][k], lb["model_state"][k]) for k in la["model_state"])
    cols = ["epoch", "loss", "val_loss", "val_auc", "val_acc", "lr"]
    ha, hb = (pd.read_csv(tmp_path / d / "history.csv") for d in "ab")
    pd.testing.assert_frame_equal(ha[cols], hb[cols], check_exact=True)
    sa = json.loads((tmp_path / "a" / "train_summary.json").read_text())
    for key in ("best_epoch", "best_val_loss", "best_val_auc", "val_metrics", "epochs_run"):
        assert sa[key] == summary[key], key

    # Other data in the same folder is a different run: it starts fresh, never resumes.
    computed.clear()
    with caplog.at_level(logging.INFO, logger="cxrbs.cls.train"):
        train_classifier(MODEL, KWARGS, imgs[::-1].copy(), y[::-1].copy(), ids[::-1].copy(),
                         config(epochs=1), tmp_path / "b", progress=False)  # fmt: skip
    assert computed == [1] and "not resuming" in caplog.text
