"""Paired tests: DeLong against an O(m*n) reference and a bootstrap, McNemar vs scipy, the fold
tests against hand-worked values, Holm against a hand-written step-down and statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from cxrbs.core.errors import CxrbsError
from statsmodels.stats.multitest import multipletests

from cxrbs.cls.compare import COLUMNS, PRIMARY_ENDPOINT, compare_variants
from cxrbs.cls.stats import (
    delong_auc_ci,
    delong_auc_variance,
    delong_test,
    holm,
    mcnemar_test,
    delong_seed_test,
    detectable_auc_difference,
    equivalence_test,
    hanley_mcneil_variance,
    nadeau_bengio_test,
    serial_gatekeeping,
    sign_flip_test,
)


def _reference_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong 1988 written out with the pairwise kernel psi (independent of the midrank code)."""
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, aucs = [], [], []
    for s in scores:
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z).astype(float) + 0.5 * (x == z)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    return np.array(aucs), np.atleast_2d(s10 / m + s01 / n)


def _simulated(rng: np.random.Generator, n: int, shift: float, ties: bool = False):
    y = rng.integers(0, 2, n)
    s = y * shift + rng.normal(size=n)
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_pairwise_reference(ties: bool) -> None:
    rng = np.random.default_rng(3)
    y, a = _simulated(rng, 150, 1.0, ties)
    b = 0.6 * a + rng.normal(size=y.size)
    if ties:
        b = np.round(b, 1)
    aucs, cov = _reference_delong(y, [a, b])
    auc_a, var_a = delong_auc_variance(y, a)
    assert auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert var_a == pytest.approx(cov[0, 0], rel=1e-10)
    res = delong_test(y, a, b)
    var_diff = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z_ref = (aucs[0] - aucs[1]) / np.sqrt(var_diff)
    assert res["se"] == pytest.approx(np.sqrt(var_diff), rel=1e-10)
    assert res["z"] == pytest.approx(z_ref, rel=1e-10)
    assert res["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z_ref)), rel=1e-8)
    half = 1.959963984540054 * np.sqrt(var_diff)
    assert res["ci_low"] == pytest.approx(aucs[0] - aucs[1] - half, abs=1e-10)
    assert res["ci_high"] == pytest.approx(aucs[0] - aucs[1] + half, abs=1e-10)


def test_hanley_mcneil_rating_data_auc() -> None:
    # Hanley & McNeil (Radiology 1982) five-point rating example: published area 0.893.
    neg = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    pos = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(neg.size), np.ones(pos.size)]
    auc, var = delong_auc_variance(y, np.r_[neg, pos])
    assert round(auc, 3) == 0.893
    aucs, cov = _reference_delong(y.astype(int), [np.r_[neg, pos].astype(float)])
    assert var == pytest.approx(cov[0, 0], rel=1e-10)


def test_delong_variance_close_to_bootstrap() -> None:
    rng = np.random.default_rng(7)
    y, s = _simulated(rng, 300, 1.2)
    _, var = delong_auc_variance(y, s)
    boot = []
    for _ in range(1500):
        idx = rng.integers(0, y.size, y.size)
        if 0 < y[idx].sum() < y.size:
            boot.append(roc_auc_score(y[idx], s[idx]))
    assert np.var(boot, ddof=1) == pytest.approx(var, rel=0.2)


def test_delong_ci_contains_auc_and_is_clipped() -> None:
    rng = np.random.default_rng(0)
    y, s = _simulated(rng, 100, 1.0)
    auc, var = delong_auc_variance(y, s)
    lo, hi = delong_auc_ci(y, s)
    assert lo < auc < hi
    assert hi - lo == pytest.approx(2 * 1.959963984540054 * np.sqrt(var), rel=1e-9)
    y_perfect = np.r_[np.zeros(10), np.ones(10)]
    assert delong_auc_ci(y_perfect, np.arange(20.0)) == (1.0, 1.0)


def test_delong_identical_and_very_different_classifiers() -> None:
    rng = np.random.default_rng(1)
    y, good = _simulated(rng, 200, 2.5)
    same = delong_test(y, good, good.copy())
    assert same["difference"] == 0.0 and same["se"] == 0.0 and same["p_value"] == 1.0
    noise = rng.normal(size=y.size)
    diff = delong_test(y, good, noise)
    assert diff["difference"] > 0.3
    assert diff["p_value"] < 0.01
    assert diff["ci_low"] > 0


def test_delong_rejects_too_few_cases() -> None:
    with pytest.raises(CxrbsError, match="at least 2 positive"):
        delong_test([0, 0, 1], [0.1, 0.2, 0.9], [0.3, 0.2, 0.1])
    with pytest.raises(CxrbsError, match="0 \\(normal\\) or 1"):
        delong_auc_variance([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4])


def _mcnemar_case(b: int, c: int, both_right: int = 20, both_wrong: int = 5):
    """Labels and two prediction vectors with the requested discordant counts."""
    y = np.ones(both_right + b + c + both_wrong, dtype=int)
    a_ok = np.r_[np.ones(both_right), np.ones(b), np.zeros(c), np.zeros(both_wrong)].astype(bool)
    b_ok = np.r_[np.ones(both_right), np.zeros(b), np.ones(c), np.zeros(both_wrong)].astype(bool)
    return y, np.where(a_ok, y, 1 - y), np.where(b_ok, y, 1 - y)


def test_mcnemar_exact_matches_binomial() -> None:
    y, pa, pb = _mcnemar_case(2, 9)
    res = mcnemar_test(y, pa, pb)
    assert (res["b"], res["c"]) == (2, 9)
    assert res["method"] == "exact binomial"
    assert res["p_value"] == pytest.approx(sps.binomtest(2, 11, 0.5).pvalue, rel=1e-12)
    assert res["p_value"] == pytest.approx(2 * sum(sps.binom.pmf(k, 11, 0.5) for k in range(3)))


def test_mcnemar_chi_square_with_correction() -> None:
    y, pa, pb = _mcnemar_case(10, 25)
    res = mcnemar_test(y, pa, pb)
    chi2 = (abs(10 - 25) - 1) ** 2 / 35
    assert res["method"] == "chi-square with continuity correction"
    assert res["statistic"] == pytest.approx(chi2)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(chi2, 1))


def test_mcnemar_no_discordant_pairs() -> None:
    y, pa, pb = _mcnemar_case(0, 0)
    assert mcnemar_test(y, pa, pb)["p_value"] == 1.0


def test_delong_zero_se_with_a_difference_is_nan_with_reason() -> None:
    # A perfect classifier vs a constant one: every placement value is constant (1 and 1/2), so
    # the variance of the difference is 0 while the AUCs differ (1 vs 0.5). It used to give p = 0.
    y = np.array([0, 0, 0, 1, 1, 1])
    res = delong_test(y, [1, 2, 3, 4, 5, 6], [3.0] * 6)
    assert res["se"] == 0 and res["difference"] == pytest.approx(0.5)
    assert np.isnan(res["p_value"]) and np.isnan(res["ci_low"]) and "undefined" in res["reason"]
    y = np.array([0, 0, 1, 1])
    same = delong_test(y, [0.1, 0.2, 0.8, 0.9], [0.1, 0.2, 0.8, 0.9])
    assert same["p_value"] == 1.0 and same["reason"] == ""


def test_sign_flip_hand_worked_four_folds() -> None:
    # d = [0.04, 0.02, -0.01, 0.03], sum 0.08. Of the 16 sign patterns of the magnitudes
    # (0.04, 0.02, 0.01, 0.03) only +++ + (0.10), ++-+ (0.08) and their negations reach |sum| >= 0.08.
    a = np.array([0.84, 0.77, 0.69, 0.88])
    b = a - np.array([0.04, 0.02, -0.01, 0.03])
    res = sign_flip_test(a, b)
    assert res["p_value"] == pytest.approx(4 / 16)
    assert res["difference"] == pytest.approx(0.02)
    assert res["min_p"] == pytest.approx(0.125) and res["reason"] == ""


def test_sign_flip_equal_differences_do_not_degenerate() -> None:
    # The issue's example: fold values [0.80, 0.75, 0.70, 0.85] vs each - 0.03. The plain t-test
    # gave p ~ 1e-45; the exact test gives its floor 2/16, the corrected t-test NaN with a reason.
    a = np.array([0.80, 0.75, 0.70, 0.85])
    sf = sign_flip_test(a, a - 0.03)
    assert sf["p_value"] == pytest.approx(0.125)
    nb = nadeau_bengio_test(a, a - 0.03)
    assert np.isnan(nb["p_value"]) and np.isnan(nb["ci_low"]) and "zero spread" in nb["reason"]
    assert sign_flip_test(a, a)["p_value"] == 1.0
    assert np.isnan(sign_flip_test([0.8, np.nan], [0.7, 0.6])["p_value"])
    with pytest.raises(CxrbsError, match="per-fold values"):
        sign_flip_test([0.8], [0.7])


def test_sign_flip_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=6), rng.normal(size=6)
    ref = sps.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                               n_resamples=np.inf)
    assert sign_flip_test(a, b)["p_value"] == pytest.approx(ref.pvalue)


def test_nadeau_bengio_against_hand_computation() -> None:
    a = np.array([0.84, 0.77, 0.69, 0.88])
    d = np.array([0.04, 0.02, -0.01, 0.03])
    res = nadeau_bengio_test(a, a - d)
    se = d.std(ddof=1) * np.sqrt(1 / 4 + 1 / 3)  # (1/k + n_test/n_train) with k = 4 folds
    t = 0.02 / se
    assert res["statistic"] == pytest.approx(t)
    assert res["p_value"] == pytest.approx(2 * sps.t.sf(t, 3))
    half = sps.t.ppf(0.975, 3) * se
    assert (res["ci_low"], res["ci_high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    # the correction only inflates the plain paired t-test's variance
    plain = sps.ttest_rel(a, a - d)
    assert res["statistic"] == pytest.approx(plain.statistic * np.sqrt(0.25 / (0.25 + 1 / 3)))
    assert res["p_value"] > plain.pvalue


def _holm_by_hand(p: list[float]) -> np.ndarray:
    order = np.argsort(p)
    m, out, running = len(p), np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_statsmodels_and_hand_written_step_down() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.20]
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm(p), expected)
    np.testing.assert_allclose(holm(p), _holm_by_hand(p))
    with_nan = holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2]], _holm_by_hand([0.01, 0.04]))


def _predictions(seed: int = 0, n: int = 240) -> pd.DataFrame:
    """Two variants x 4 folds; the bone-suppressed scores carry less noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = pd.DataFrame({"image": [f"img{i:03d}.png" for i in range(n)],
                         "patient": [f"p{i:03d}" for i in range(n)], "label": y,
                         "fold": np.arange(n) % 4, "dataset": "shenzhen"})
    signal = y * 2.0 - 1.0
    p_base = 1 / (1 + np.exp(-(0.5 * signal + rng.normal(size=n))))
    p_bs = 1 / (1 + np.exp(-(2.0 * signal + rng.normal(size=n))))
    return pd.concat([base.assign(variant="baseline", probability=p_base),
                      base.assign(variant="bone_suppressed", probability=p_bs)], ignore_index=True)


def base_auc_folds(base: pd.DataFrame) -> list[float]:
    return [roc_auc_score(base.label[base.fold == f], base.probability[base.fold == f])
            for f in range(4)]


def test_compare_variants_rows_and_direction() -> None:
    preds = _predictions()
    out = compare_variants(preds)
    assert list(out.columns) == COLUMNS
    assert len(out) == 9
    delong = out[out["test"] == "DeLong (pooled out-of-fold)"].iloc[0]
    assert delong["family"] == "primary" and delong["metric"] == "auc"
    base = preds[preds.variant == "baseline"]
    bs = preds[preds.variant == "bone_suppressed"]
    assert delong["value_reference"] == pytest.approx(roc_auc_score(base.label, base.probability))
    assert delong["value_arm"] == pytest.approx(roc_auc_score(bs.label, bs.probability))
    assert delong["difference"] > 0.1 and delong["p_value"] < 0.01
    # one data set: the primary family has one member, so Holm leaves its p unchanged
    assert delong["p_adjusted"] == pytest.approx(delong["p_value"])
    fold_auc = out[(out.metric == "auc") & (out.family == "secondary")].iloc[0]
    per_fold = [roc_auc_score(bs.label[bs.fold == f], bs.probability[bs.fold == f]) -
                roc_auc_score(base.label[base.fold == f], base.probability[base.fold == f])
                for f in range(4)]
    assert fold_auc["difference"] == pytest.approx(np.mean(per_fold))
    # p and CI from one method, which can reject with 4 folds (issue 22); sign-flip in the note
    nb = nadeau_bengio_test([roc_auc_score(bs.label[bs.fold == f], bs.probability[bs.fold == f])
                             for f in range(4)], base_auc_folds(base), 0.05)
    assert fold_auc["test"] == "Nadeau–Bengio corrected t over 4 folds"
    assert fold_auc["p_value"] == pytest.approx(nb["p_value"])
    assert fold_auc["ci_low"] == pytest.approx(nb["ci_low"])
    assert "sign-flip p = 0.125" in fold_auc["note"]  # all four folds improved: the floor
    base_auc = [roc_auc_score(base.label[base.fold == f], base.probability[base.fold == f])
                for f in range(4)]
    assert delong["fold_mean_reference"] == pytest.approx(np.mean(base_auc))
    assert delong["fold_sd_reference"] == pytest.approx(np.std(base_auc, ddof=1))
    mc = out[out["test"] == "McNemar (pooled)"].iloc[0]
    assert mc["metric"] == "accuracy" and mc["difference"] > 0
    secondary = out[out.family == "secondary"]
    np.testing.assert_allclose(secondary["p_adjusted"],
                               multipletests(secondary["p_value"], method="holm")[1])
    assert out["test"].str.len().gt(0).all()


def test_primary_family_is_adjusted_across_data_sets() -> None:
    preds = pd.concat([_predictions(seed=1), _predictions(seed=4).assign(dataset="montgomery")],
                      ignore_index=True)
    out = compare_variants(preds)
    primary = out[out.family == "primary"]
    assert sorted(primary["dataset"]) == ["montgomery", "shenzhen"]
    np.testing.assert_allclose(primary["p_adjusted"],
                               multipletests(primary["p_value"], method="holm")[1])
    with pytest.raises(CxrbsError, match="primary_endpoint"):
        compare_variants(preds, primary_endpoint="accuracy by McNemar")
    assert compare_variants(preds, primary_endpoint=PRIMARY_ENDPOINT).equals(out)


def test_compare_variants_aligns_by_image_not_row_order() -> None:
    preds = _predictions(seed=2)
    shuffled = preds.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(compare_variants(preds), compare_variants(shuffled))


def test_compare_variants_rejects_mismatched_images() -> None:
    preds = _predictions()
    drop = preds.index[(preds.variant == "bone_suppressed") & (preds.image == "img007.png")]
    with pytest.raises(CxrbsError, match="same images/folds"):
        compare_variants(preds.drop(drop))
    moved = preds.copy()
    moved.loc[(moved.variant == "baseline") & (moved.image == "img007.png"), "fold"] = 0
    moved.loc[(moved.variant == "bone_suppressed") & (moved.image == "img007.png"), "fold"] = 1
    with pytest.raises(CxrbsError, match="same images/folds"):
        compare_variants(moved)


def _repeated(n_repeats: int = 3, noise: float = 0.05) -> pd.DataFrame:
    base = pd.concat([_predictions(seed=1), _predictions(seed=4).assign(dataset="montgomery")],
                     ignore_index=True)
    rng = np.random.default_rng(0)
    repeats = [base.assign(repeat=r, probability=np.clip(
        base["probability"] + rng.normal(0, noise, len(base)), 0, 1)) for r in range(n_repeats)]
    return pd.concat(repeats, ignore_index=True)


def test_repeats_one_decisive_p_with_seed_variance() -> None:
    preds = _repeated()
    out = compare_variants(preds)
    main = out[out["repeat"] == "mean of 3 repeats"]
    assert set(main["family"]) == {"primary", "secondary"} and len(main) == 18
    mean_prob = preds.groupby(["dataset", "variant", "image", "patient", "label", "fold"],
                              as_index=False)["probability"].mean()
    single = compare_variants(mean_prob)
    # secondary rows: the seed-averaged predictions
    sec = main["family"] == "secondary"
    np.testing.assert_allclose(main.loc[sec, "p_value"].to_numpy(),
                               single.loc[single.family == "secondary", "p_value"].to_numpy())
    prim = main[main.family == "primary"].set_index("dataset")
    one = single[single.family == "primary"].set_index("dataset")
    for dataset in ("montgomery", "shenzhen"):
        part = preds[preds.dataset == dataset].sort_values("image")
        y = part[(part.variant == "baseline") & (part.repeat == 0)].label.to_numpy()
        arms = [np.stack([part[(part.variant == v) & (part.repeat == r)].probability.to_numpy()
                          for r in range(3)]) for v in ("bone_suppressed", "baseline")]
        each = [delong_test(y, arms[0][r], arms[1][r]) for r in range(3)]
        avg = delong_test(y, arms[0].mean(0), arms[1].mean(0))
        s2 = np.var([e["difference"] for e in each], ddof=1)
        seen = (np.mean([e["se"] ** 2 for e in each]) - avg["se"] ** 2) * 3 / 2
        m2 = max(s2 - seen, 0.0)
        row = prim.loc[dataset]
        assert row["difference"] == pytest.approx(one.loc[dataset, "difference"])  # same estimand
        assert row["difference"] == pytest.approx(avg["difference"])
        # default (cls.seed_variance: full): the whole between-seed variance is added
        assert row["se"] == pytest.approx(np.sqrt(avg["se"] ** 2 + s2 / 3))
        assert row["seed_sd"] == pytest.approx(np.sqrt(s2))
        assert row["df"] == pytest.approx((avg["se"] ** 2 + s2 / 3) ** 2 * 2 / (s2 / 3) ** 2)
        excess = delong_seed_test(y, *arms, seed_variance="excess")
        assert excess["se"] == pytest.approx(np.sqrt(avg["se"] ** 2 + m2 / 3))
        assert excess["model_sd"] == pytest.approx(np.sqrt(m2))
        assert row["p_value"] >= one.loc[dataset, "p_value"] - 1e-12  # training variance adds
        assert row["test"].startswith("DeLong + between-seed variance")
    np.testing.assert_allclose(prim["p_adjusted"], multipletests(prim["p_value"], method="holm")[1])
    assert prim["note"].str.contains("per repeat").all()
    per = out[out["family"] == "per repeat (descriptive)"]
    assert sorted(per["repeat"].unique()) == ["0", "1", "2"] and len(per) == 6
    # one decisive p per TB set: the rows per repeat carry an estimate and SD, never a p
    assert per["p_value"].isna().all() and per["p_adjusted"].isna().all()
    assert per["ci_low"].isna().all() and per["seed_sd"].notna().all()
    assert (per["decision"] == "descriptive (no test)").all()
    assert out["p_value"].notna().sum() == 18


def _skill_spread(skill_sd: float, n: int = 300, repeats: int = 4) -> pd.DataFrame:
    """Both arms equally good on average; each fitted model (arm x repeat) has its own skill."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n)
    frame = pd.DataFrame({"image": [f"i{i}" for i in range(n)], "patient": [f"p{i}" for i in
                          range(n)], "label": y, "fold": np.arange(n) % 4, "dataset": "shenzhen"})
    parts = []
    for r in range(repeats):
        for variant in ("baseline", "bone_suppressed"):
            skill = 1.5 + rng.normal(0, skill_sd)
            logit = skill * (2 * y - 1) + shared + 0.7 * rng.normal(size=n)
            parts.append(frame.assign(repeat=r, variant=variant, probability=1 / (1 + np.exp(
                -logit))))
    return pd.concat(parts, ignore_index=True)


def test_model_level_seed_noise_widens_the_primary_interval() -> None:
    """A whole fitted model better or worse (what DeLong cannot see) widens the CI."""
    calm = compare_variants(_skill_spread(0.0)).query("family == 'primary'").iloc[0]
    noisy = compare_variants(_skill_spread(0.5)).query("family == 'primary'").iloc[0]
    assert noisy["model_sd"] > calm["model_sd"]
    assert noisy["ci_high"] - noisy["ci_low"] > 1.3 * (calm["ci_high"] - calm["ci_low"])


def test_one_repeat_says_training_noise_is_ignored() -> None:
    out = compare_variants(_predictions())
    prim = out[out.family == "primary"].iloc[0]
    assert "not estimated" in prim["note"] and np.isinf(prim["df"])
    assert prim["detectable_difference"] == pytest.approx(
        (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * prim["se"])


def test_control_arm_gatekept_and_equivalence() -> None:
    preds = _predictions(seed=3)
    control = preds[preds.variant == "baseline"].assign(variant="control")
    out = compare_variants(pd.concat([preds, control], ignore_index=True),
                           equivalence_margin=0.05)
    assert list(out["contrast"].unique()) == ["bone_suppressed − baseline", "control − baseline",
                                              "bone_suppressed − control"]
    auc = out[out.metric.eq("auc") & out.estimate.str.startswith("pooled")].set_index("contrast")
    assert auc.loc["bone_suppressed − baseline", "family"] == "primary"
    assert auc.loc["bone_suppressed − control", "family"] == "gatekept"
    assert auc.loc["control − baseline", "family"] == "equivalence"
    assert (out["family"] == "primary").sum() == 1
    # control is a copy of baseline: difference 0, equivalent within the margin by TOST
    ctl = auc.loc["control − baseline"]
    assert ctl["difference"] == 0.0 and ctl["p_value"] < 0.05
    assert ctl["decision"] == "equivalent within the margin" and "TOST" in ctl["test"]
    # gatekept: p_adjusted never below the primary's, and the primary is rejected here
    gk = auc.loc["bone_suppressed − control"]
    prim = auc.loc["bone_suppressed − baseline"]
    assert prim["p_adjusted"] < 0.05 and gk["p_adjusted"] >= prim["p_adjusted"]
    assert gk["decision"] == "bone_suppressed better"
    # a margin too tight for the data: equivalence NOT shown, never "no difference"
    tight = compare_variants(pd.concat([preds, control.assign(
        probability=np.clip(control.probability + np.random.default_rng(0).normal(0, 0.3, len(
            control)), 0, 1))], ignore_index=True), equivalence_margin=0.001)
    row = tight[(tight.family == "equivalence")].iloc[0]
    assert row["decision"] == "equivalence NOT shown"
    with pytest.raises(CxrbsError, match="optionally"):
        compare_variants(pd.concat([preds, control.assign(variant="other")], ignore_index=True))


def test_gate_closed_when_a_primary_is_not_rejected() -> None:
    strong = _predictions(seed=3)
    equal = _predictions(seed=5).assign(dataset="montgomery")
    equal.loc[equal.variant == "bone_suppressed", "probability"] = equal.loc[
        equal.variant == "baseline", "probability"].to_numpy()
    preds = pd.concat([strong, equal], ignore_index=True)
    control = preds[preds.variant == "baseline"].assign(variant="control")
    out = compare_variants(pd.concat([preds, control], ignore_index=True))
    gk = out[out.family == "gatekept"]
    assert (gk["decision"].str.startswith("not tested")).all()
    assert (gk["p_adjusted"] >= out[out.family == "primary"]["p_adjusted"].max()).all()


def test_serial_gatekeeping_and_tost_by_hand() -> None:
    np.testing.assert_allclose(serial_gatekeeping([0.01, 0.03], [0.001, 0.04]), [0.03, 0.04])
    np.testing.assert_allclose(serial_gatekeeping([0.01, 0.2], [0.001, 0.002]), [0.2, 0.2])
    eq = equivalence_test(0.0, 0.01, 0.02)
    assert eq["p_value"] == pytest.approx(sps.norm.sf(2.0)) and eq["equivalent"]
    assert eq["ci_high"] == pytest.approx(sps.norm.ppf(0.95) * 0.01)
    assert not equivalence_test(0.0, 0.02, 0.02)["equivalent"]  # too noisy: not shown


def test_detectable_difference_matches_the_issue_sizes() -> None:
    """Issue 22: about 0.025–0.04 on Shenzhen, 0.055–0.09 on Montgomery (80% power, alpha 0.05)."""
    sz = detectable_auc_difference(336, 326, auc=0.9, correlation=0.5)
    mc = detectable_auc_difference(58, 80, auc=0.9, correlation=0.5)
    assert 0.025 < sz < 0.04 and 0.055 < mc < 0.09
    assert detectable_auc_difference(336, 326, auc=0.9, correlation=0.5, model_sd=0.02) > sz
    assert detectable_auc_difference(336, 326, auc=0.9, correlation=0.5, model_sd=0.02,
                                     repeats=5) < detectable_auc_difference(
        336, 326, auc=0.9, correlation=0.5, model_sd=0.02, repeats=1)
    # Hanley-McNeil variance against simulation of a binormal AUC of 0.9 is not needed here:
    # the formula itself (Radiology 1982, Table) gives SE 0.0123 at A = 0.9, 336/326.
    assert np.sqrt(hanley_mcneil_variance(0.9, 336, 326)) == pytest.approx(0.01234, abs=2e-4)


