"""Paired significance tests: baseline vs bone-suppressed classifiers on the same images.

The paper reports that bone suppression helped significantly (p < 0.05) without naming its test,
so this module offers the three standard paired comparisons and `compare_variants` runs all of
them on the out-of-fold predictions:

* DeLong's test for two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988),
  in the midrank formulation of Sun & Xu (IEEE SPL 2014). Hand-written: scipy, statsmodels and
  scikit-learn do not provide it.
* McNemar's test on per-image correctness at a fixed threshold (statsmodels).
* A paired t-test over the cross-validation folds (scipy), with a Wilcoxon signed-rank p beside it.

Every "difference" is ``a - b``; `compare_variants` passes the bone-suppressed variant as ``a``, so
a positive difference means bone suppression helped. DeLong and McNemar treat images as
independent cases: right for Shenzhen and Montgomery (one image per patient), optimistic otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from cxrbs.core.errors import CxrbsError

#: Below this many discordant pairs McNemar uses the exact binomial test (usual rule of thumb).
MCNEMAR_EXACT_BELOW = 25
VARIANTS = ("baseline", "bone_suppressed")
PREDICTION_COLUMNS = ("image", "patient", "label", "probability", "fold", "variant", "dataset")
TEST_DELONG = "DeLong (pooled out-of-fold)"
TEST_MCNEMAR = "McNemar (pooled)"


def _as_labels(y_true: Any, name: str = "y_true") -> np.ndarray:
    """Validate 0/1 labels, so a 1/2 or string coding fails loudly instead of giving nonsense."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise CxrbsError(
            f"{name} must be a non-empty 1-D sequence of 0/1 labels; got shape {y.shape}"
        )
    try:
        yf = y.astype(float)
    except (TypeError, ValueError) as exc:
        raise CxrbsError(f"{name} must hold 0 (normal) or 1 (abnormal/TB); got {y[:5]!r}") from exc
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        raise CxrbsError(
            f"{name} must hold 0 (normal) or 1 (abnormal/TB); got values {np.unique(y[bad])[:5]!r}"
        )
    return yf.astype(np.int8)


def _as_scores(scores: Any, n: int, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.shape != (n,):
        raise CxrbsError(f"{name} must have one score per label ({n}); got shape {s.shape}")
    if not np.isfinite(s).all():
        raise CxrbsError(f"{name} contains NaN or infinite scores: fix the predictions file")
    return s


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong placement values (V10 per positive, V01 per negative) for k score rows.

    Midranks (Sun & Xu 2014) replace DeLong's O(m*n) kernel with three rankings per classifier:
    V10_i = fraction of negatives scored below positive i (ties count one half), and
    V01_j = fraction of positives scored above negative j.
    """
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise CxrbsError(
            f"DeLong needs at least 2 positive and 2 negative cases; got {m} positive and "
            f"{n} negative: check the labels or pool more folds"
        )
    tx = sps.rankdata(pos, axis=1)
    ty = sps.rankdata(neg, axis=1)
    tz = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = tz[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def _delong_var(v10: np.ndarray, v01: np.ndarray) -> float:
    """S10/m + S01/n for one row of placement values."""
    return float(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)


def delong_auc_variance(y_true: Any, scores: Any) -> tuple[float, float]:
    """ROC AUC and its DeLong variance (higher score = more likely positive)."""
    y = _as_labels(y_true)
    s = _as_scores(scores, y.size, "scores")
    auc, v10, v01 = _placements(y, s[None, :])
    return float(auc[0]), _delong_var(v10[0], v01[0])


def delong_auc_ci(y_true: Any, scores: Any, alpha: float = 0.05) -> tuple[float, float]:
    """Normal-approximation DeLong interval for one AUC, clipped to [0, 1] (as pROC does)."""
    auc, var = delong_auc_variance(y_true, scores)
    half = sps.norm.ppf(1 - alpha / 2) * np.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def delong_test(
    y_true: Any, scores_a: Any, scores_b: Any, alpha: float = 0.05
) -> dict[str, float]:
    """DeLong's paired test of AUC(a) - AUC(b) for two classifiers scored on the same cases.

    The variance of the difference is computed from the differences of placement values, which
    equals the contrast [1, -1] S [1, -1]' of the 2x2 DeLong covariance but stays exactly 0 for
    identical scores. With se == 0 the p-value is 1 when the AUCs are equal and 0 otherwise
    (the limit of the normal test). Two-sided p from the standard normal.
    """
    y = _as_labels(y_true)
    s = np.stack(
        [_as_scores(scores_a, y.size, "scores_a"), _as_scores(scores_b, y.size, "scores_b")]
    )
    auc, v10, v01 = _placements(y, s)
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(_delong_var(v10[0] - v10[1], v01[0] - v01[1]), 0.0)))
    if se > 0:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    else:
        z = 0.0 if diff == 0 else float(np.copysign(np.inf, diff))
        p = 1.0 if diff == 0 else 0.0
    half = float(sps.norm.ppf(1 - alpha / 2)) * se
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "difference": diff,
        "se": se,
        "z": float(z),
        "p_value": p,
        "ci_low": diff - half,
        "ci_high": diff + half,
    }


def mcnemar_test(y_true: Any, pred_a: Any, pred_b: Any) -> dict[str, Any]:
    """McNemar's test on correctness: b = a right & b wrong, c = a wrong & b right.

    Exact binomial when b + c < 25 (the chi-square approximation is poor there), otherwise
    chi-square with continuity correction.
    """
    y = _as_labels(y_true)
    a = _as_labels(pred_a, "pred_a")
    b_ = _as_labels(pred_b, "pred_b")
    if not (a.size == b_.size == y.size):
        raise CxrbsError(
            f"y_true, pred_a and pred_b must have equal length; got {y.size}, {a.size}, {b_.size}"
        )
    ok_a, ok_b = a == y, b_ == y
    table = np.array(
        [[np.sum(ok_a & ok_b), np.sum(ok_a & ~ok_b)], [np.sum(~ok_a & ok_b), np.sum(~ok_a & ~ok_b)]]
    )
    b, c = int(table[0, 1]), int(table[1, 0])
    exact = b + c < MCNEMAR_EXACT_BELOW
    if b + c == 0:  # no discordant pairs: no evidence of a difference (avoids 0/0 in statsmodels)
        statistic, p = 0.0, 1.0
    else:
        res = mcnemar(table, exact=exact, correction=True)
        statistic, p = float(res.statistic), float(res.pvalue)
    method = "exact binomial" if exact else "chi-square with continuity correction"
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method}


def paired_fold_test(values_a: Any, values_b: Any, alpha: float = 0.05) -> dict[str, Any]:
    """Paired t-test of per-fold metric values a vs b, with a t-based CI of the mean difference.

    Power is low with the study's 4 folds: the t-test has 3 degrees of freedom (t crit 3.18), and
    the exact two-sided Wilcoxon signed-rank p (``wilcoxon_p``) cannot go below 2/2**4 = 0.125,
    so it can never reach 0.05. Folds also share training data, so their differences are not fully
    independent and the t-test is somewhat liberal (Nadeau & Bengio 2003). Report both, and prefer
    DeLong/McNemar on pooled out-of-fold predictions for the headline p-value.
    All-zero differences give p = 1 and a zero-width CI; ``wilcoxon_p`` is NaN then (no non-zero
    pairs to rank) and when fewer than 2 folds differ.
    """
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise CxrbsError(
            f"paired fold test needs two equal-length lists of >= 2 per-fold values; "
            f"got shapes {a.shape} and {b.shape}"
        )
    d = a - b
    n = d.size
    if np.all(d == 0):
        statistic, p, lo, hi = 0.0, 1.0, 0.0, 0.0
    else:
        res = sps.ttest_rel(a, b)
        ci = res.confidence_interval(confidence_level=1 - alpha)
        statistic, p = float(res.statistic), float(res.pvalue)
        lo, hi = float(ci.low), float(ci.high)
    wilcoxon_p = float("nan")
    if np.isfinite(d).all() and np.count_nonzero(d) >= 2:
        wilcoxon_p = float(sps.wilcoxon(a, b).pvalue)
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "difference": float(d.mean()),
        "ci_low": lo,
        "ci_high": hi,
        "statistic": statistic,
        "p_value": p,
        "method": f"paired t-test over {n} folds",
        "wilcoxon_p": wilcoxon_p,
        "n_folds": n,
    }


def _paired_accuracy_ci(b: int, c: int, n: int, alpha: float) -> tuple[float, float]:
    """Wald CI of acc_a - acc_b = (b - c)/n for paired proportions (Agresti 2013, sec. 11.1).

    statsmodels has no paired-proportion interval; McNemar itself gives only a p-value.
    """
    d = (b - c) / n
    se = np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    half = sps.norm.ppf(1 - alpha / 2) * se
    return float(d - half), float(d + half)


def _paired_frames(predictions: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Baseline and bone-suppressed rows of one dataset, aligned by image; refuse mismatches."""
    sub = predictions[predictions["dataset"] == dataset]
    frames = []
    for variant in VARIANTS:
        part = sub[sub["variant"] == variant]
        dup = part["image"][part["image"].duplicated()]
        if not dup.empty:
            raise CxrbsError(
                f"predictions for dataset {dataset!r}, variant {variant!r} list image "
                f"{dup.iloc[0]!r} more than once: keep one out-of-fold prediction per image"
            )
        frames.append(part.set_index("image").sort_index())
    base, bs = frames
    if not base.index.equals(bs.index):
        only = base.index.symmetric_difference(bs.index)
        raise CxrbsError(
            f"predictions for dataset {dataset!r}: the variants must use the same images/folds; "
            f"{len(only)} image(s) appear in only one variant (e.g. {only[0]!r})"
        )
    for col in ("fold", "label", "patient"):
        if not (base[col].to_numpy() == bs[col].to_numpy()).all():
            raise CxrbsError(
                f"predictions for dataset {dataset!r}: column {col!r} differs between variants; "
                "the variants must use the same images/folds (re-run with the same split)"
            )
    return base, bs


def _check_predictions(predictions: pd.DataFrame) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise CxrbsError(
            f"predictions table lacks column(s) {missing}: expected {list(PREDICTION_COLUMNS)}"
        )
    variants = set(predictions["variant"].unique())
    if variants != set(VARIANTS):
        raise CxrbsError(
            f"predictions column 'variant' must hold exactly {list(VARIANTS)}; "
            f"got {sorted(variants)}"
        )


def _row(dataset: str, metric: str, base: float, bs: float, diff: float, lo: float, hi: float,
         test: str, p: float, estimate: str) -> dict[str, Any]:
    return {"dataset": dataset, "metric": metric, "baseline": base, "bone_suppressed": bs,
            "difference": diff, "ci_low": lo, "ci_high": hi, "test": test, "p_value": p,
            "estimate": estimate}


def _compare_dataset(base: pd.DataFrame, bs: pd.DataFrame, dataset: str, threshold: float,
                     alpha: float) -> list[dict[str, Any]]:
    from cxrbs.cls.metrics import METRICS, binary_metrics, threshold_predictions

    y = base["label"].to_numpy()
    p_base, p_bs = base["probability"].to_numpy(), bs["probability"].to_numpy()
    fold = base["fold"].to_numpy()
    folds = sorted(np.unique(fold))
    per_fold = {
        variant: [binary_metrics(y[fold == f], prob[fold == f], threshold) for f in folds]
        for variant, prob in (("baseline", p_base), ("bone_suppressed", p_bs))
    }
    rows = []
    for metric in METRICS:
        t = paired_fold_test([r[metric] for r in per_fold["bone_suppressed"]],
                             [r[metric] for r in per_fold["baseline"]], alpha)
        rows.append(_row(dataset, metric, t["mean_b"], t["mean_a"], t["difference"], t["ci_low"],
                         t["ci_high"], t["method"], t["p_value"], f"mean of {len(folds)} folds"))
    d = delong_test(y, p_bs, p_base, alpha)
    rows.append(_row(dataset, "auc", d["auc_b"], d["auc_a"], d["difference"], d["ci_low"],
                     d["ci_high"], TEST_DELONG, d["p_value"], "pooled out-of-fold"))
    pred_base = threshold_predictions(p_base, threshold)
    pred_bs = threshold_predictions(p_bs, threshold)
    mc = mcnemar_test(y, pred_bs, pred_base)
    lo, hi = _paired_accuracy_ci(mc["b"], mc["c"], y.size, alpha)
    acc_base, acc_bs = float(np.mean(pred_base == y)), float(np.mean(pred_bs == y))
    rows.append(_row(dataset, "accuracy", acc_base, acc_bs, acc_bs - acc_base, lo, hi,
                     TEST_MCNEMAR, mc["p_value"], "pooled out-of-fold"))
    return rows


def compare_variants(
    predictions: pd.DataFrame, *, threshold: float = 0.5, alpha: float = 0.05
) -> pd.DataFrame:
    """Baseline vs bone-suppressed, per dataset: one row per (metric, test).

    ``predictions`` holds one out-of-fold prediction per image and variant (columns image,
    patient, label, probability, fold, variant, dataset). For each of the seven metrics a paired
    t-test over folds (baseline/bone_suppressed = mean of per-fold values, so the difference and its
    CI refer to the same quantity); plus AUC by DeLong and accuracy by McNemar on the pooled
    out-of-fold predictions (baseline/bone_suppressed = pooled values; the McNemar row's CI is the
    Wald interval for paired proportions). ``difference`` = bone_suppressed - baseline. The
    ``estimate`` column says which kind of value a row holds.
    """
    _check_predictions(predictions)
    rows: list[dict[str, Any]] = []
    for dataset in sorted(predictions["dataset"].unique()):
        base, bs = _paired_frames(predictions, dataset)
        rows.extend(_compare_dataset(base, bs, dataset, threshold, alpha))
    return pd.DataFrame(rows)
