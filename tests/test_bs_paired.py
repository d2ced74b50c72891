"""Paired per-image tests of bone-suppression models against identity, checked against scipy and
statsmodels (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from cxrbs.bs.paired import identity_verdict, paired_difference_test, paired_tests


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


def test_paired_difference_matches_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1, 15), rng.normal(0.0, 1, 15)
    res = paired_difference_test(a, b, n_boot=500, seed=3)
    assert res["p_value"] == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert res["difference"] == pytest.approx(np.mean(a - b))
    assert res["ci_low"] < res["difference"] < res["ci_high"]
    assert res == paired_difference_test(a, b, n_boot=500, seed=3)
    same = paired_difference_test(a, a.copy(), n_boot=500, seed=3)
    assert np.isnan(same["p_value"]) and "identical" in same["reason"]
    with_nan = paired_difference_test(np.r_[a, np.nan], np.r_[b, 0.0], n_boot=100, seed=0)
    assert with_nan["n"] == 15


def test_paired_tests_contrasts_and_holm_within_each_test_set() -> None:
    out = paired_tests(_per_image(), selected="ae_bs", n_boot=200, seed=0)
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
