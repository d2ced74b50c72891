"""Family-wise false positives with two classifiers of equal skill (issue 12).

A seeded simulation at the sizes of Shenzhen (336 TB / 326 normal) and Montgomery (58 / 80): both
"arms" score the same images with equal skill and correlated noise, on the same 4 folds. The old
analysis read 18 unadjusted p-values per run (per data set: 7 paired t-tests over folds, DeLong,
McNemar) and any p < 0.05 looked like a finding; the new primary family (DeLong per TB data set,
Holm across data sets) must keep the family-wise error rate at or below 5%.
"""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cxrbs.cls.compare import compare_variants
from cxrbs.cls.metrics import METRICS, _weighted_metrics, threshold_predictions
from cxrbs.cls.stats import delong_test, mcnemar_test
from cxrbs.stats import holm

SIZES = {"shenzhen": (336, 326), "montgomery": (58, 80)}
RUNS = 400
ALPHA = 0.05


def _equal_arms(rng: np.random.Generator, n_pos: int, n_neg: int):
    """Labels, folds and two equally good, correlated probability vectors."""
    n = n_pos + n_neg
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    fold = rng.permutation(np.arange(n) % 4)
    shared = rng.normal(size=n)
    arms = [1 / (1 + np.exp(-(y + shared + 0.7 * rng.normal(size=n) - 0.5))) for _ in range(2)]
    return y, fold, arms[0], arms[1]


def _old_family(y, fold, p_base, p_bs, p_delong: float) -> list[float]:
    """The pre-issue-12 p-values of one data set: 7 fold t-tests, DeLong, McNemar, unadjusted."""
    masks = np.stack([(fold == f).astype(float) for f in range(4)])
    m_base = _weighted_metrics(y, p_base, masks, 0.5)
    m_bs = _weighted_metrics(y, p_bs, masks, 0.5)
    ps = [float(sps.ttest_rel(m_bs[m], m_base[m]).pvalue) for m in METRICS]
    ps.append(p_delong)
    ps.append(mcnemar_test(y, threshold_predictions(p_bs, 0.5),
                           threshold_predictions(p_base, 0.5))["p_value"])
    return ps


def _simulate(seed: int = 20261130) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    old_hits = new_hits = 0
    for _ in range(RUNS):
        old, primary = [], []
        for n_pos, n_neg in SIZES.values():
            y, fold, p_base, p_bs = _equal_arms(rng, n_pos, n_neg)
            primary.append(delong_test(y, p_bs, p_base)["p_value"])
            old += _old_family(y, fold, p_base, p_bs, primary[-1])
        old_hits += np.nanmin(old) < ALPHA
        new_hits += np.nanmin(holm(primary)) < ALPHA
    return old_hits / RUNS, new_hits / RUNS


def test_primary_family_controls_family_wise_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # statsmodels' Holm branch runs gc.collect() on every call (~0.1 s inside pytest, once per
    # simulated run); the adjusted values do not depend on it, so skip it for this test only.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    before, after = _simulate()
    print(f"\nfamily-wise false-positive rate with equal classifiers ({RUNS} runs): "
          f"before (18 unadjusted p) {before:.1%}, after (primary family, Holm) {after:.1%}")
    assert after <= ALPHA
    assert before > ALPHA


def test_compare_variants_primary_rows_are_the_simulated_family() -> None:
    """The table's primary rows are exactly what the simulation counts: DeLong p, Holm across sets."""
    rng = np.random.default_rng(1)
    frames, primary = [], []
    for name, (n_pos, n_neg) in SIZES.items():
        y, fold, p_base, p_bs = _equal_arms(rng, n_pos, n_neg)
        ids = [f"{name}{i}" for i in range(y.size)]
        base = pd.DataFrame({"image": ids, "patient": ids, "label": y, "fold": fold,
                             "dataset": name})
        frames += [base.assign(variant="baseline", probability=p_base),
                   base.assign(variant="bone_suppressed", probability=p_bs)]
        primary.append((name, delong_test(y, p_bs, p_base)["p_value"]))
    out = compare_variants(pd.concat(frames, ignore_index=True))
    rows = out[out.family == "primary"].set_index("dataset")
    names, p = zip(*primary, strict=True)
    np.testing.assert_allclose(rows.loc[list(names), "p_value"], p)
    np.testing.assert_allclose(rows.loc[list(names), "p_adjusted"], holm(p))
