"""Paired per-image tests of bone-suppression models against identity, checked against scipy and
statsmodels (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from cxrbs.bs.paired_stats import (
    hodges_lehmann_ci,
    identity_verdict,
    paired_difference_test,
    paired_tests,
)


def _per_image(seed: int = 0, n: int = 12) -> pd.DataFrame:
    """ae_bs about 1 dB above identity on both sets, convnet_bs equal to identity plus noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for test_set in ("validation", "des"):
        base = 30 + rng.normal(0, 2, n)
        for arch, psnr in (("identity", base), ("ae_bs", base + 1 + rng.normal(0, 0.3, n)),
                           ("convnet_bs", base + rng.normal(0, 0.3, n))):
            frames.append(pd.DataFrame({
                "arch": arch, "test_set": test_set, "name": [f"p{i}" for i in range(n)],
                "psnr": psnr, "mae": 0.05 - psnr / 1000, "ssim": psnr / 40, "ms_ssim": psnr / 35,
                "bsr": 0.5, "bsr_energy": 0.0 if arch == "identity" else psnr / 100}))
    return pd.concat(frames, ignore_index=True)


def test_paired_difference_matches_scipy_and_is_one_estimand() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1, 15), rng.normal(0.0, 1, 15)
    d = a - b
    res = paired_difference_test(a, b)
    assert res["p_value"] == pytest.approx(sps.wilcoxon(d, method="exact").pvalue)
    i, j = np.triu_indices(15)
    assert res["difference"] == pytest.approx(np.median((d[i] + d[j]) / 2))  # Hodges-Lehmann
    assert res["mean_difference"] == pytest.approx(np.mean(d))
    assert res["ci_low"] < res["difference"] < res["ci_high"] and res["exact"]
    assert res == paired_difference_test(a, b, n_boot=500, seed=3)  # no resampling: deterministic
    same = paired_difference_test(a, a.copy())
    assert np.isnan(same["p_value"]) and "identical" in same["reason"]
    with_nan = paired_difference_test(np.r_[a, np.nan], np.r_[b, 0.0])
    assert with_nan["n"] == 15


@pytest.mark.parametrize("n", [8, 15, 40, 80])
def test_interval_is_the_inverted_signed_rank_test(n: int) -> None:
    """theta lies in the CI exactly when the same Wilcoxon test of d - theta does not reject."""
    d = np.random.default_rng(n).normal(0.4, 1, n)
    est, low, high, exact = hodges_lehmann_ci(d)
    assert exact == (n <= 50)
    method = "exact" if exact else "asymptotic"
    eps = 1e-9
    for inside in (low + eps, est, high - eps):
        assert sps.wilcoxon(d - inside, method=method).pvalue > 0.049
    for outside in (low - eps, high + eps):
        assert sps.wilcoxon(d - outside, method=method).pvalue <= 0.05


def _worse_on_most(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Issue 22's counter-example: n = 49, worse on 42 images (about -0.28 dB), mean +0.32 dB."""
    rng = np.random.default_rng(seed)
    d = np.r_[-0.28 + rng.normal(0, 0.05, 42), 3.92 + rng.normal(0, 0.05, 7)]
    base = 30 + rng.normal(0, 2, 49)
    return base + d, base


def test_worse_on_most_images_is_never_better_even_with_a_positive_mean() -> None:
    model, ident = _worse_on_most()
    d = model - ident
    assert d.mean() > 0.25 and (d < 0).sum() == 42 and np.median(d) < -0.2
    res = paired_difference_test(model, ident)
    assert res["p_value"] < 0.01  # the rank test rejects: the model is WORSE
    assert res["difference"] < 0 and res["ci_high"] < 0
    per_image = pd.DataFrame({
        "arch": ["identity"] * 49 + ["ae_bs"] * 49, "test_set": "des",
        "name": [f"p{i}" for i in range(49)] * 2, "psnr": np.r_[ident, model]})
    out = paired_tests(per_image, selected="ae_bs", metrics=("psnr",))
    row = out.iloc[0]
    assert not row["a_better"] and row["p_adjusted"] < 0.05 and row["n_a_better"] == 7
    assert row["mean_difference"] > 0 > row["difference"]
    verdict = identity_verdict(out, selected="ae_bs", metric="psnr")["des"]
    assert verdict["significantly_better"] is False and verdict["significantly_worse"] is True


def test_a_better_needs_the_adjusted_p_not_only_the_direction() -> None:
    """A small positive shift that Holm does not confirm is not 'better'."""
    rng = np.random.default_rng(5)
    ident = 30 + rng.normal(0, 2, 10)
    per_image = pd.DataFrame({
        "arch": ["identity"] * 10 + ["ae_bs"] * 10, "test_set": "des",
        "name": [f"p{i}" for i in range(10)] * 2,
        "psnr": np.r_[ident, ident + 0.05 + rng.normal(0, 1, 10)]})
    out = paired_tests(per_image, selected="ae_bs", metrics=("psnr",))
    assert not out["a_better"].iloc[0] and out["p_adjusted"].iloc[0] >= 0.05
    assert not identity_verdict(out, selected="ae_bs", metric="psnr")["des"]["significantly_better"]


def test_paired_tests_contrasts_and_holm_within_each_test_set() -> None:
    out = paired_tests(_per_image(), selected="ae_bs", n_boot=200, seed=0)  # n_boot: unused
    per_set = out[(out.test_set == "des") & (out.metric == "psnr")]
    contrasts = set(zip(per_set.model_a, per_set.model_b, strict=True))
    assert contrasts == {("ae_bs", "identity"), ("convnet_bs", "identity"), ("ae_bs", "convnet_bs")}
    for test_set, family in out.groupby("test_set"):
        ok = family["p_value"].notna()
        np.testing.assert_allclose(family.loc[ok, "p_adjusted"],
                                   multipletests(family.loc[ok, "p_value"], method="holm")[1])
        assert (family["adjustment"] == f"Holm within test set {test_set}").all()
    ae = per_set[(per_set.model_a == "ae_bs") & (per_set.model_b == "identity")].iloc[0]
    assert ae["a_better"] and ae["p_adjusted"] < 0.05
    mae = out[(out.metric == "mae") & (out.model_a == "ae_bs") & (out.model_b == "identity")]
    assert mae["a_better"].all()  # lower MAE is better: the direction follows the metric
    assert out.loc[out.test_set == "validation", "note"].str.contains("selection set").all()
    verdict = identity_verdict(out, selected="ae_bs", metric="psnr")
    assert set(verdict) == {"des", "validation"} and verdict["des"]["significantly_better"]
