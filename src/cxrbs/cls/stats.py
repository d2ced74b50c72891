"""Paired significance tests for two classifiers scored on the same images, and Holm's adjustment.

The primitives that `cxrbs.cls.compare` combines into the comparison table:

* DeLong's test for two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988),
  in the midrank formulation of Sun & Xu (IEEE SPL 2014). Hand-written: scipy, statsmodels and
  scikit-learn do not provide it.
* McNemar's test on per-image correctness at a fixed threshold (statsmodels).
* Two tests over cross-validation folds that cannot degenerate: the exact sign-flip permutation
  test (all 2**k sign patterns; with 4 folds its smallest two-sided p is 0.125, so it can never
  reach 0.05 on its own) and the Nadeau-Bengio corrected resampled t-test (Machine Learning 2003),
  whose variance inflation accounts for folds that share training data. A plain paired t-test is
  anti-conservative there and gives p ~ 1e-45 when the fold differences happen to be equal.
* Holm's step-down adjustment (statsmodels ``multipletests``).

Every "difference" is ``a - b``. A test that is undefined (zero standard error with a non-zero
difference, zero spread over folds) returns NaN with the reason in ``reason``, never 0 or 1.
DeLong and McNemar treat images as independent cases: right for Shenzhen and Montgomery (one
image per patient), optimistic otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from cxrbs.core.errors import CxrbsError

#: Below this many discordant pairs McNemar uses the exact binomial test (usual rule of thumb).
MCNEMAR_EXACT_BELOW = 25
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
) -> dict[str, Any]:
    """DeLong's paired test of AUC(a) - AUC(b) for two classifiers scored on the same cases.

    The variance of the difference is computed from the differences of placement values, which
    equals the contrast [1, -1] S [1, -1]' of the 2x2 DeLong covariance but stays exactly 0 for
    identical scores. Two-sided p from the standard normal. se == 0 with equal AUCs (identical
    rankings) gives p = 1; se == 0 with unequal AUCs has no defined z, so p is NaN and ``reason``
    says why (it used to be 0, a "significant" result from a degenerate variance estimate).
    """
    y = _as_labels(y_true)
    s = np.stack(
        [_as_scores(scores_a, y.size, "scores_a"), _as_scores(scores_b, y.size, "scores_b")]
    )
    auc, v10, v01 = _placements(y, s)
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(_delong_var(v10[0] - v10[1], v01[0] - v01[1]), 0.0)))
    reason = ""
    if se > 0:
        z = diff / se
        p = float(2 * sps.norm.sf(abs(z)))
    elif diff == 0:
        z, p = 0.0, 1.0
    else:
        z, p = float("nan"), float("nan")
        reason = "DeLong standard error is 0 while the AUCs differ: the z statistic is undefined"
    half = float(sps.norm.ppf(1 - alpha / 2)) * se if not reason else float("nan")
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "difference": diff,
        "se": se,
        "z": float(z),
        "p_value": p,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "reason": reason,
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


def _fold_differences(values_a: Any, values_b: Any) -> np.ndarray:
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise CxrbsError(
            f"paired fold test needs two equal-length lists of >= 2 per-fold values; "
            f"got shapes {a.shape} and {b.shape}"
        )
    return a - b


#: The exact test enumerates 2**k sign patterns; beyond this many folds it would be slow.
MAX_EXACT_FOLDS = 16


def sign_flip_test(values_a: Any, values_b: Any) -> dict[str, Any]:
    """Exact two-sided sign-flip permutation test of the mean per-fold difference a - b.

    Under H0 (no difference) each fold's difference is as likely to have either sign, so the
    p-value is the share of all 2**k sign patterns whose |mean| is at least the observed one
    (the observed pattern included). It needs no variance estimate, so equal fold differences
    give p = 2/2**k (0.125 with 4 folds: the smallest attainable, see ``min_p``) instead of the
    t-test's ~1e-45. NaN (with ``reason``) when a fold value is missing.
    """
    d = _fold_differences(values_a, values_b)
    k = d.size
    if k > MAX_EXACT_FOLDS:
        raise CxrbsError(f"the exact sign-flip test enumerates 2**k patterns; {k} folds is too many")
    min_p = 2.0 / 2**k
    if not np.isfinite(d).all():
        return {"difference": float("nan"), "p_value": float("nan"), "min_p": min_p, "n_folds": k,
                "reason": "a per-fold value is undefined (NaN), e.g. a fold without a class"}
    signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)
    stats_ = np.abs(signs @ d)
    observed = abs(d.sum())
    # A relative tolerance keeps patterns that tie the observed statistic from being lost to
    # floating-point rounding (e.g. 0.1 + 0.2 vs 0.3).
    p = float(np.mean(stats_ >= observed - 1e-12 * max(1.0, np.abs(d).sum())))
    return {"difference": float(d.mean()), "p_value": p, "min_p": min_p, "n_folds": k,
            "reason": ""}


def nadeau_bengio_test(values_a: Any, values_b: Any, alpha: float = 0.05,
                       test_train_ratio: float | None = None) -> dict[str, Any]:
    """Nadeau-Bengio corrected resampled t-test of per-fold values a vs b, with its CI.

    The folds' training sets overlap, so their differences are positively correlated and the
    plain t-test's variance s**2/k is too small. Nadeau & Bengio (2003) inflate it to
    (1/k + n_test/n_train) s**2; for k-fold cross-validation n_test/n_train = 1/(k-1) (the default
    of ``test_train_ratio``). t has k-1 degrees of freedom. Zero spread of the differences leaves t
    undefined: p and the CI are NaN with ``reason`` (never the 1e-45 of an unguarded t-test).
    """
    d = _fold_differences(values_a, values_b)
    k = d.size
    ratio = 1.0 / (k - 1) if test_train_ratio is None else float(test_train_ratio)
    out: dict[str, Any] = {"difference": float(d.mean()), "statistic": float("nan"),
                           "p_value": float("nan"), "ci_low": float("nan"),
                           "ci_high": float("nan"), "n_folds": k, "reason": ""}
    if not np.isfinite(d).all():
        out["reason"] = "a per-fold value is undefined (NaN), e.g. a fold without a class"
        return out
    sd = float(d.std(ddof=1))
    if not sd > 0:
        out["reason"] = "the per-fold differences have zero spread: the t statistic is undefined"
        return out
    se = sd * np.sqrt(1.0 / k + ratio)
    t = float(d.mean() / se)
    half = float(sps.t.ppf(1 - alpha / 2, k - 1)) * se
    out.update(statistic=t, p_value=float(2 * sps.t.sf(abs(t), k - 1)),
               ci_low=float(d.mean() - half), ci_high=float(d.mean() + half))
    return out


def holm(p_values: Any) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels), controlling the family-wise error rate.

    NaN p-values (tests that were undefined) stay NaN and do not count towards the family size:
    a test that produced no p-value cannot produce a false positive.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out
