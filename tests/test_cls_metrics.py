"""Classification metrics against hand counts and sklearn; CIs and the patient-level bootstrap."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from cxrbs.cls.metrics import (
    METRICS,
    _weighted_metrics,
    binary_metrics,
    metrics_with_ci,
    threshold_predictions,
)
from cxrbs.core.errors import CxrbsError

Y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
P = np.array([0.1, 0.6, 0.3, 0.8, 0.4, 0.9, 0.7, 0.2])
# threshold 0.5 -> pred  [0, 1, 0, 1, 0, 1, 1, 0]
# TP = images 3,5,6 = 3; FN = image 4 = 1; FP = image 1 = 1; TN = images 0,2,7 = 3


def test_binary_metrics_hand_counts() -> None:
    m = binary_metrics(Y, P)
    tp, fn, fp, tn = 3, 1, 1, 3
    assert m["accuracy"] == 6 / 8
    assert m["sensitivity"] == 3 / 4
    assert m["specificity"] == 3 / 4
    assert m["precision"] == 3 / 4
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["mcc"] == pytest.approx(mcc) == pytest.approx(0.5)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(Y, threshold_predictions(P, 0.5)))
    # AUC by pair counting: positives 0.8,0.4,0.9,0.7 vs negatives 0.1,0.6,0.3,0.2;
    # 0.4 loses only to 0.6, so 15 of 16 pairs are ordered correctly
    assert m["auc"] == pytest.approx(15 / 16) == pytest.approx(roc_auc_score(Y, P))
    assert tuple(m) == METRICS


def test_threshold_is_strict() -> None:
    assert threshold_predictions([0.49, 0.5, 0.51], 0.5).tolist() == [0, 0, 1]
    assert binary_metrics(Y, P, threshold=0.65)["sensitivity"] == 3 / 4  # 0.8, 0.9, 0.7 above


def test_degenerate_inputs_give_nan_not_errors() -> None:
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["specificity"])
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert binary_metrics([0, 1], [0.1, 0.2])["precision"] == 0.0  # nothing predicted positive
    with pytest.raises(CxrbsError, match="0 \\(normal\\) or 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(CxrbsError, match="one score per label"):
        binary_metrics([0, 1], [0.1])


def test_weighted_metrics_equal_metrics_on_repeated_images() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60), 1)  # ties, to exercise the half-credit of tied pairs
    w = rng.integers(0, 4, (3, 60)).astype(float)
    got = _weighted_metrics(y, p, w, 0.5)
    for row in range(3):
        idx = np.repeat(np.arange(60), w[row].astype(int))
        ref = binary_metrics(y[idx], p[idx])
        for metric in METRICS:
            assert got[metric][row] == pytest.approx(ref[metric], abs=1e-12), metric


def _scores(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 1 / (1 + np.exp(-(1.5 * y - 0.75 + rng.normal(size=n))))


def test_metrics_with_ci_independent_images() -> None:
    y, p = _scores(400, 1)
    out = metrics_with_ci(y, p, n_boot=500).set_index("metric")
    assert list(out.index) == list(METRICS)
    assert (out.ci_low <= out.value).all() and (out.value <= out.ci_high).all()
    acc = out.loc["accuracy"]
    k = int(np.sum(threshold_predictions(p, 0.5) == y))
    assert (acc.ci_low, acc.ci_high) == pytest.approx(proportion_confint(k, 400, method="wilson"))
    assert acc.ci_method == "Wilson score interval"
    assert out.loc["auc", "ci_method"].startswith("DeLong")
    assert out.loc["mcc", "ci_method"] == "image-level percentile bootstrap (500 resamples)"


def test_metrics_with_ci_deterministic_with_seed() -> None:
    y, p = _scores(200, 2)
    groups = np.arange(200) // 2
    a = metrics_with_ci(y, p, groups, n_boot=300, seed=11)
    b = metrics_with_ci(y, p, groups, n_boot=300, seed=11)
    c = metrics_with_ci(y, p, groups, n_boot=300, seed=12)
    assert a.equals(b)
    assert not a.equals(c)
    assert (a.ci_method == "patient-level percentile bootstrap (300 resamples)").all()


def test_bootstrap_resamples_whole_patients() -> None:
    # All 40 positives belong to one patient: every replicate that draws that patient holds the
    # same positives (each weighted alike), so patient-level sensitivity has a zero-width interval,
    # while resampling images one by one does not.
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(40, int), np.zeros(60, int)]
    p = np.r_[rng.uniform(0.3, 1.0, 40), rng.uniform(0.0, 0.7, 60)]
    groups = np.r_[np.zeros(40, int), np.arange(1, 61)]
    by_patient = metrics_with_ci(y, p, groups, n_boot=400).set_index("metric")
    sens = by_patient.loc["sensitivity"]
    assert sens.ci_low == pytest.approx(sens.value) and sens.ci_high == pytest.approx(sens.value)
    by_image = metrics_with_ci(y, p, None, n_boot=400).set_index("metric")
    assert by_image.loc["sensitivity", "ci_high"] - by_image.loc["sensitivity", "ci_low"] > 0.1


def test_duplicated_images_do_not_shrink_patient_level_ci() -> None:
    y, p = _scores(300, 4)
    single = metrics_with_ci(y, p, np.arange(300), n_boot=1000, seed=1).set_index("metric")
    y2, p2, g2 = np.tile(y, 2), np.tile(p, 2), np.tile(np.arange(300), 2)
    twice = metrics_with_ci(y2, p2, g2, n_boot=1000, seed=1).set_index("metric")
    naive = metrics_with_ci(y2, p2, None, n_boot=1000, seed=1).set_index("metric")
    for metric in ("f1", "mcc"):  # bootstrap rows in all three
        w1 = single.loc[metric, "ci_high"] - single.loc[metric, "ci_low"]
        w2 = twice.loc[metric, "ci_high"] - twice.loc[metric, "ci_low"]
        wn = naive.loc[metric, "ci_high"] - naive.loc[metric, "ci_low"]
        assert w2 == pytest.approx(w1, rel=0.15)
        assert wn < 0.85 * w1  # about 1/sqrt(2) when duplicates are wrongly treated as independent


def test_bootstrap_is_fast_enough() -> None:
    y, p = _scores(800, 6)
    start = time.perf_counter()
    metrics_with_ci(y, p, np.arange(800) // 2, n_boot=2000)
    assert time.perf_counter() - start < 3.0
