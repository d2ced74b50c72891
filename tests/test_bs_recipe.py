"""The bundled model's recipe as bs.train keys (issue 20): cosine + warm-up over the step budget,
AdamW, EMA, gradient clipping, online pair-consistent augmentation, selection on the validation
PSNR gain, the stratified split; deterministic and resumable like the study's recipe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from cxrbs.bs import train as train_mod
from cxrbs.bs.online_augment import OnlineAugment, augment_crop, draw_crop
from cxrbs.bs.pairs import split_pairs, strata_of
from cxrbs.bs.train import TrainConfig, train_bs
from cxrbs.core.errors import CxrbsError
from cxrbs.training import loop
from cxrbs.training.schedule import warmup_cosine

from test_train import make_pairs

MODEL = "unet_bs"
KWARGS = {"width": 4, "levels": 2}
AUG = {"prob": 1.0, "hflip": 0.5, "gamma": [0.8, 1.25], "window_jitter": 0.05,
       "noise_std": [0.0, 0.01], "blur_sigma": [0.0, 1.0], "unsharp": [0.0, 1.0],
       "scale": [0.8, 1.25]}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_pairs(10, 32, 1), make_pairs(4, 32, 2)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recipe(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=2e-3, crop_size=16, threads=1, device="cpu",
                steps_per_epoch=3, schedule="cosine", warmup_frac=0.2, min_lr_frac=0.05,
                optimizer="adamw", weight_decay=1e-4, ema_decay=0.9, grad_clip=1.0,
                select_on="psnr_gain", online_augment=AUG, early_stopping_patience=10)
    base.update(kw)
    return TrainConfig(**base)


def state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def test_warmup_cosine_shape() -> None:
    f = [warmup_cosine(p, warmup_frac=0.1, min_lr_frac=0.02) for p in np.linspace(0, 1, 101)]
    assert f[0] == pytest.approx(1e-3) and f[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:11]))  # warm-up rises
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # then decays
    assert f[-1] == pytest.approx(0.02)
    with pytest.raises(ValueError):
        warmup_cosine(0.5, warmup_frac=1.0, min_lr_frac=0.0)


def test_full_recipe_is_deterministic_and_follows_the_step_schedule(data, tmp_path) -> None:
    tr, va = data
    a = train_bs(MODEL, KWARGS, tr, va, recipe(), tmp_path / "a", progress=False)
    train_bs(MODEL, KWARGS, tr, va, recipe(), tmp_path / "b", progress=False)
    for name in ("best.pt", "last.pt"):
        sa, sb = state(tmp_path / "a" / name), state(tmp_path / "b" / name)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    hist = pd.read_csv(tmp_path / "a" / "history.csv")
    # lr at the start of epoch e+1 is the one set for the last step of epoch e (step 3e - 1).
    expected = [2e-3] + [2e-3 * warmup_cosine((3 * e - 1) / 9, warmup_frac=0.2, min_lr_frac=0.05)
                         for e in (1, 2)]
    assert hist["lr"].tolist() == pytest.approx(expected)
    assert a["steps"] == 9
    # selection on the PSNR gain: best epoch = highest val_psnr_gain, whatever val_loss says
    assert a["best_epoch"] == int(hist.loc[hist["val_psnr_gain"].idxmax(), "epoch"])
    assert a["best_val_psnr_gain"] == pytest.approx(hist["val_psnr_gain"].max())


def test_best_checkpoint_holds_the_ema_weights(data, tmp_path) -> None:
    tr, va = data
    train_bs(MODEL, KWARGS, tr, va, recipe(epochs=1), tmp_path / "ema", progress=False)
    last = torch.load(tmp_path / "ema" / "last.pt", weights_only=True)
    best = state(tmp_path / "ema" / "best.pt")
    ema = {k.removeprefix("module."): v for k, v in last["ema_state"].items()
           if k.startswith("module.")}
    assert all(torch.equal(best[k], ema[k]) for k in best)
    assert not all(torch.equal(best[k], last["model_state"][k]) for k in best)


def test_resume_with_ema_and_cosine_equals_the_uninterrupted_run(data, tmp_path,
                                                                  monkeypatch) -> None:
    tr, va = data
    c = recipe()
    train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "a", progress=False)
    real = train_mod._train_epoch

    def killed(run, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real(run, epoch)

    monkeypatch.setattr(train_mod, "_train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "b", progress=False)
    monkeypatch.setattr(train_mod, "_train_epoch", real)
    train_bs(MODEL, KWARGS, tr, va, c, tmp_path / "b", progress=False)
    for name in ("best.pt", "last.pt"):
        sa, sb = state(tmp_path / "a" / name), state(tmp_path / "b" / name)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    # A cosine run with more epochs is another schedule: it starts over instead of extending.
    key = train_mod._resume_key
    meta = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    longer = {**meta, "config": {**meta["config"], "epochs": 4}}
    assert key(meta) != key(longer)


def test_gradient_clipping_bounds_the_step() -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = (w * torch.tensor([300.0, 400.0, 0.0])).sum()
    loop.optimise(loss, float(loss.detach()), opt, scaler, lambda v: CxrbsError("x"), grad_clip=1.0)
    assert float(w.detach().norm()) == pytest.approx(1.0, rel=1e-5)


def test_online_augmentation_changes_both_images_alike() -> None:
    """Linear changes (flip, blur/unsharp, re-stretch, scale, noise) keep target = source - bone:
    the augmented pair's difference is the same change applied to the bone layer alone."""
    rng0 = np.random.default_rng(0)
    tissue = ndimage.gaussian_filter(rng0.uniform(0.35, 0.55, (40, 40)), 2).astype(np.float32)
    bone = 0.1 * ndimage.gaussian_filter(rng0.uniform(0, 1, (40, 40)), 1.5).astype(np.float32)
    pair = np.stack([tissue + bone, tissue])
    linear = OnlineAugment.from_mapping({**AUG, "gamma": [1.0, 1.0]})
    for seed in range(8):
        out = augment_crop(draw_crop(pair, 24, linear, np.random.default_rng(seed)), linear,
                           np.random.default_rng(seed + 100))
        ref = np.stack([bone + 0.5, np.full_like(bone, 0.5)])
        ref_out = augment_crop(draw_crop(ref, 24, linear, np.random.default_rng(seed)), linear,
                               np.random.default_rng(seed + 100))
        assert out.shape == (2, 24, 24) and out.dtype == np.float32
        np.testing.assert_allclose(out[0] - out[1], ref_out[0] - ref_out[1], atol=1e-5)
    # identical channels stay identical under every lever, gamma included
    same = np.stack([tissue, tissue])
    full = OnlineAugment.from_mapping(AUG)
    out = augment_crop(draw_crop(same, 24, full, np.random.default_rng(1)), full,
                       np.random.default_rng(2))
    np.testing.assert_array_equal(out[0], out[1])
    assert not OnlineAugment.from_mapping({}).active


@pytest.mark.parametrize("bad, key", [({"prob": 2}, "prob"), ({"gamma": [2, 1]}, "gamma"),
                                      ({"scale": [0, 1]}, "scale"), ({"nope": 1}, "nope"),
                                      ({"noise_std": 0.1}, "noise_std")])
def test_bad_augmentation_settings_name_the_key(bad, key) -> None:
    with pytest.raises(CxrbsError, match=key):
        TrainConfig(online_augment=bad).validate()


@pytest.mark.parametrize("bad, key", [({"schedule": "step"}, "schedule"),
                                      ({"optimizer": "sgd"}, "optimizer"),
                                      ({"select_on": "ssim"}, "select_on"),
                                      ({"ema_decay": 1.0}, "ema_decay"),
                                      ({"grad_clip": 0}, "grad_clip"),
                                      ({"warmup_frac": 1.0}, "warmup_frac")])
def test_bad_recipe_settings_name_the_key(bad, key) -> None:
    with pytest.raises(CxrbsError, match=key):
        TrainConfig(**bad).validate()


def test_stratified_split_keeps_each_stratum_in_every_part() -> None:
    ids = np.array([f"JPCLN{i:03d}" for i in range(36)] + [f"JPCNN{i:03d}" for i in range(92)])
    strata = strata_of(ids, "^(JPC[LN]N)")
    assert set(strata) == {"JPCLN", "JPCNN"}
    split = split_pairs(ids, val_fraction=0.117, test_fraction=0.117, seed=2026, strata=strata)
    for part in ("train", "val", "test"):
        lung = np.sum((split == part) & (strata == "JPCLN"))
        assert lung / np.sum(split == part) == pytest.approx(36 / 128, abs=0.08), part
    assert np.sum(split == "val") == np.sum(split == "test") == 15
    again = split_pairs(ids, val_fraction=0.117, test_fraction=0.117, seed=2026, strata=strata)
    assert (split == again).all()
    with pytest.raises(CxrbsError, match="stratify_regex"):
        strata_of(ids, "(")
    # no match -> one "" stratum; a tiny stratum joins the largest instead of failing
    tiny = strata_of(np.array(["a1", "a2", "b1"] + [f"c{i}" for i in range(20)]), "^([ab])")
    out = split_pairs(np.array(["a1", "a2", "b1"] + [f"c{i}" for i in range(20)]),
                      val_fraction=0.2, test_fraction=0.2, seed=0, strata=tiny)
    assert set(out) == {"train", "val", "test"}
    assert math.isclose(np.mean(out == "train"), 0.6, abs_tol=0.15)
