"""MS-SSIM settings, the combined loss and the image-quality metrics, checked against values
computed independently (by hand, scipy, skimage or pytorch-msssim directly)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_msssim import ms_ssim as library_ms_ssim
from scipy import stats

from cxrbs.bs import losses, metrics
from cxrbs.core.errors import CxrbsError
from cxrbs.bs.losses import STANDARD_WEIGHTS, CombinedLoss, msssim, msssim_settings


def _smooth_image(side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = 0.3 + 0.3 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)))
    img += 0.05 * rng.standard_normal((side, side))
    return np.clip(img, 0.0, 0.8).astype(np.float64)


@pytest.mark.parametrize(
    ("side", "win", "scales"),
    [(256, 11, 5), (161, 11, 5), (160, 9, 5), (128, 7, 5), (64, 7, 4), (32, 7, 3)],
)
def test_msssim_settings_known_sides(side: int, win: int, scales: int) -> None:
    got_win, weights = msssim_settings(side)
    assert (got_win, len(weights)) == (win, scales)
    assert side > (got_win - 1) * 2 ** (scales - 1)
    if scales == 5:
        assert weights == list(STANDARD_WEIGHTS)
    else:
        assert sum(weights) == pytest.approx(1.0, abs=1e-12)
        ratios = np.array(weights) / np.array(STANDARD_WEIGHTS[:scales])
        assert np.allclose(ratios, ratios[0])  # same relative weights as the published ones
    # The settings must actually run: identical images give 1, a noisy copy less.
    y = torch.from_numpy(_smooth_image(side, 1))[None, None]
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    noisy = (y + 0.05 * noise).clamp(0, 1)
    assert float(msssim(y, y, win_size=got_win, weights=weights)) == pytest.approx(1.0, abs=1e-9)
    val = float(msssim(noisy, y, win_size=got_win, weights=weights))
    assert 0.0 < val < 0.999


@pytest.mark.parametrize("side", [256, 128])
def test_msssim_matches_library_where_library_accepts(side: int) -> None:
    win, weights = msssim_settings(side)
    y = torch.from_numpy(_smooth_image(side, 2))[None, None].repeat(2, 1, 1, 1)
    x = (y + 0.03 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    expected = library_ms_ssim(
        x, y, data_range=1.0, win_size=win, weights=weights, size_average=False
    )
    assert torch.allclose(msssim(x, y, win_size=win, weights=weights, size_average=False), expected)


def test_msssim_own_scale_loop_equals_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback for small sides is the library's algorithm: force it where both apply."""
    win, weights = 7, msssim_settings(64)[1]  # 4 scales of window 7, at 128 px both paths work
    y = torch.from_numpy(_smooth_image(128, 3))[None, None].repeat(3, 1, 1, 1)
    x = (y + 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    expected = library_ms_ssim(
        x, y, data_range=1.0, win_size=win, weights=weights, size_average=False
    )
    monkeypatch.setattr(losses, "_LIBRARY_FACTOR", 10**9)
    got = msssim(x, y, win_size=win, weights=weights, size_average=False)
    assert torch.allclose(got, expected, atol=1e-12)


def test_msssim_settings_rule_over_all_sides() -> None:
    prev_scales = 0
    for side in range(5, 400):
        win, weights = msssim_settings(side)
        assert win % 2 == 1 and win >= 3
        assert side > (win - 1) * 2 ** (len(weights) - 1), side
        assert len(weights) >= prev_scales  # more room never means fewer scales
        prev_scales = len(weights)
        if side > 160:
            assert (win, len(weights)) == (11, 5)
        if len(weights) < 5:
            assert win <= 7  # the window shrinks to 7 before any scale is dropped
    assert msssim_settings(5) == (3, [w / sum(STANDARD_WEIGHTS[:2]) for w in STANDARD_WEIGHTS[:2]])
    with pytest.raises(CxrbsError, match="too small"):
        msssim_settings(4)


def test_combined_loss_values() -> None:
    side = 64
    y = torch.from_numpy(_smooth_image(side, 4)).float()[None, None].repeat(2, 1, 1, 1)
    crit = CombinedLoss()
    assert float(crit(y, y)) == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(3)
    small = (y + 0.02 * torch.randn(y.shape, generator=gen)).clamp(0, 1)
    large = (y + 0.10 * torch.randn(y.shape, generator=gen)).clamp(0, 1)
    l_small, l_large = float(crit(small, y)), float(crit(large, y))
    assert 0.0 < l_small < l_large <= 1.0
    # Independent formula at 256 px, where the library's own ms_ssim applies with its defaults.
    y2 = torch.from_numpy(_smooth_image(256, 5)).float()[None, None]
    x2 = (y2 + 0.05 * torch.randn(y2.shape, generator=gen)).clamp(0, 1)
    expected = 0.16 * (x2 - y2).abs().mean() + 0.84 * (1 - library_ms_ssim(x2, y2, data_range=1.0))
    assert float(crit(x2, y2)) == pytest.approx(float(expected), rel=1e-6)


def test_combined_loss_overshoot_and_bf16_are_finite() -> None:
    y = torch.from_numpy(_smooth_image(32, 6)).float()[None, None]
    # Far outside [0, 1], like an untrained linear output.
    pred = (y * 2.0 - 0.5).requires_grad_(True)
    loss = CombinedLoss()(pred, y)
    loss.backward()
    value = loss.detach().item()
    assert math.isfinite(value) and torch.isfinite(pred.grad).all()
    # The MAE term sees the raw overshoot (MS-SSIM only the clamped prediction).
    assert value >= 0.16 * float((pred.detach() - y).abs().mean()) - 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf = CombinedLoss()(y.to(torch.bfloat16), y)
    assert bf.dtype == torch.float32
    fp32 = CombinedLoss()(y.to(torch.bfloat16).float(), y)
    assert float(bf) == pytest.approx(float(fp32), abs=1e-6)


def test_psnr_mae_known_values() -> None:
    t = _smooth_image(32, 7)
    p = t + 0.1
    assert metrics.psnr(p, t) == pytest.approx(20.0, abs=1e-9)
    assert metrics.mae(p, t) == pytest.approx(0.1, abs=1e-12)
    assert metrics.psnr(t, t) == metrics.PSNR_CAP_DB == 100.0
    with pytest.raises(CxrbsError, match="shape"):
        metrics.psnr(t, t[:-1])


def test_ssim_and_ms_ssim() -> None:
    t = _smooth_image(64, 8)
    assert metrics.ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ms_ssim(t, t) == pytest.approx(1.0, abs=1e-9)
    noisy = np.clip(t + 0.05 * np.random.default_rng(0).standard_normal(t.shape), 0, 1)
    s, ms = metrics.ssim(noisy, t), metrics.ms_ssim(noisy, t)
    assert 0.0 < s < 0.99 and 0.0 < ms < 0.999
    with pytest.raises(CxrbsError, match="11x11"):
        metrics.ssim(t[:8, :8], t[:8, :8])


def test_bone_suppression_ratios() -> None:
    target = np.full((2, 2), 0.3)
    source = target + np.array([[0.0, 0.0], [0.0, 0.4]])  # one bright bone pixel
    assert metrics.bone_suppression_ratio(source, target, target) == pytest.approx(1.0)
    assert metrics.bone_energy_removed(source, target, target) == pytest.approx(1.0)
    assert metrics.bone_energy_removed(source, source, target) == pytest.approx(0.0)
    # GL-LCM/BS-LDM BSR of the identity, by hand: mean bone 0.1; one-sided residual
    # (0.1, 0.1, 0.1, 0) -> 1 - 0.03 / 0.16.
    assert metrics.bone_suppression_ratio(source, source, target) == pytest.approx(1 - 0.03 / 0.16)
    # A global brightness offset is forgiven by BSR, not by the energy fraction.
    assert metrics.bone_suppression_ratio(source, target + 0.05, target) == pytest.approx(1.0)
    assert metrics.bone_energy_removed(source, target + 0.05, target) < 1.0
    # Half the bone left: energy fraction 1 - 0.25.
    assert metrics.bone_energy_removed(source, (source + target) / 2, target) == pytest.approx(0.75)
    assert math.isnan(metrics.bone_suppression_ratio(target, target, target))
    assert math.isnan(metrics.bone_energy_removed(target, target, target))


def test_summarize_matches_scipy_t_interval() -> None:
    rng = np.random.default_rng(9)
    vals = pd.DataFrame(
        {
            "model": ["a"] * 6 + ["b"] * 5 + ["c"],
            "name": [f"img{i}" for i in range(12)],
            "psnr": rng.normal(30, 2, 12),
            "bsr": np.r_[rng.uniform(0.5, 1, 10), np.nan, 0.7],
        }
    )
    out = metrics.summarize(vals, ["model"])
    assert list(out.columns) == ["model", "metric", "mean", "sd", "ci_low", "ci_high", "n"]
    assert set(out["metric"]) == {"psnr", "bsr"}  # the text column is not a metric
    for (model, metric), row in out.set_index(["model", "metric"]).iterrows():
        v = vals.loc[vals["model"] == model, metric].dropna().to_numpy()
        assert row["n"] == len(v)
        assert row["mean"] == pytest.approx(v.mean())
        if len(v) < 2:
            assert np.isnan([row["ci_low"], row["ci_high"], row["sd"]]).all()
            continue
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
        assert row["ci_low"] < row["mean"] < row["ci_high"]
        assert row["sd"] == pytest.approx(v.std(ddof=1))
    assert int(out.query("model == 'b' and metric == 'bsr'")["n"].iloc[0]) == 4  # NaN left out
    overall = metrics.summarize(vals, [], metrics=["psnr"])
    assert overall["n"].tolist() == [12]
    assert overall["mean"].iloc[0] == pytest.approx(vals["psnr"].mean())
    with pytest.raises(CxrbsError, match="grouping"):
        metrics.summarize(vals, ["nope"])


def _pairs(n: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, 2, side, side), np.float32)
    xx = np.arange(side) / side
    for i in range(n):
        out[i, 1] = _smooth_image(side, seed * 100 + i)
        bone = 0.1 * np.clip(np.sin(2 * np.pi * (xx[:, None] * 4 + rng.uniform())), 0, None)
        out[i, 0] = np.clip(out[i, 1] + bone, 0, 1)
    return out


def test_evaluate_pairs_identity_baseline_and_uint16_memmap(tmp_path) -> None:
    pairs = _pairs(5, 32, 1)
    names = [f"p{i}" for i in range(5)]
    base = metrics.evaluate_pairs(None, pairs, names, batch_size=2)
    assert list(base.columns) == ["name", *metrics.METRIC_COLUMNS]
    assert base["name"].tolist() == names
    assert np.allclose(base["bsr_energy"], 0.0, atol=1e-12)
    for i in range(5):
        s, t = pairs[i, 0].astype(np.float64), pairs[i, 1].astype(np.float64)
        assert base["mae"][i] == pytest.approx(np.abs(s - t).mean(), rel=1e-6)
        assert base["psnr"][i] == pytest.approx(10 * np.log10(1 / np.mean((s - t) ** 2)), rel=1e-6)
        b = s - t
        expected_bsr = 1 - np.sum(np.clip(b.mean() - b, 0, None) ** 2) / np.sum(b**2)
        assert base["bsr"][i] == pytest.approx(expected_bsr, rel=1e-6)
    perfect = metrics.evaluate_pairs(lambda src: _targets_like(src, pairs), pairs, names)
    assert np.allclose(perfect["bsr_energy"], 1.0) and np.allclose(perfect["psnr"], 100.0)
    # uint16 memmap (the prepared-stack format) gives the same numbers up to quantisation.
    path = tmp_path / "pairs.npy"
    np.save(path, np.round(pairs * 65535).astype(np.uint16))
    mm = np.load(path, mmap_mode="r")
    from_disk = metrics.evaluate_pairs(None, mm, names, batch_size=3)
    assert np.allclose(from_disk["psnr"], base["psnr"], atol=0.01)
    with pytest.raises(CxrbsError, match="names"):
        metrics.evaluate_pairs(None, pairs, names[:-1])
    with pytest.raises(CxrbsError, match="shape"):
        metrics.evaluate_pairs(lambda src: src[:, :-1], pairs, names)
    with pytest.raises(CxrbsError, match="dtype"):
        metrics.evaluate_pairs(None, pairs.astype(np.int32), names)


def _targets_like(src: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Look up each source image's target (a perfect predictor for the test)."""
    out = np.empty_like(src)
    for k, img in enumerate(src):
        i = int(np.argmin([np.abs(pairs[j, 0] - img).sum() for j in range(len(pairs))]))
        out[k] = pairs[i, 1]
    return out
