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
* Holm's step-down adjustment (:func:`cxrbs.stats.holm`, shared with bone suppression).

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

from cxrbs.core.errors import CxrbsError
from cxrbs.stats import holm

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
    # the smallest p these b + c discordant pairs can give (all on one side); the exact test with
    # few discordant pairs cannot reject at 0.05 (b + c <= 5 gives >= 0.0625)
    n = b + c
    min_p = 1.0 if n == 0 else (min(1.0, 2.0 * 0.5**n) if exact else 0.0)
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method,
            "min_p": min_p}


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


TEST_DELONG_SEEDS = "DeLong + between-seed variance (pooled out-of-fold, seed-averaged)"


def delong_seed_test(y_true: Any, scores_a: Any, scores_b: Any, alpha: float = 0.05,
                     seed_variance: str = "full") -> dict[str, Any]:
    """AUC(a) - AUC(b) of the seed-averaged predictions, with training variance (issue 22).

    ``scores_a``/``scores_b`` are (R, n) arrays: R fine-tuning repeats (other seeds, same folds)
    of each arm on the same n images. The estimand is the AUC difference of the predictions
    averaged over the R repeats. DeLong's variance covers only the sampling of images and treats
    the fitted models as fixed; a fine-tuned model's AUC also moves from seed to seed. So

        Var = Var_DeLong(diff of averaged predictions) + M / R,

    with M the between-seed variance of the per-repeat AUC differences, s**2. Part of s**2 is
    per-image noise that differs between seeds, which DeLong already counts (it resamples the
    images together with their scores); ``seed_variance="excess"`` removes that part,
    M = max(s**2 - E, 0) with E = (mean_r Var_DeLong(diff_r) - Var_DeLong(diff of averaged)) *
    R / (R - 1), so a model-level shift (the whole fitted model better or worse, which DeLong
    cannot see) is added once and per-image noise not twice; ``"full"`` (default) adds s**2 / R
    as is (conservative: benchmarks/fwer_seed_noise.py measures a family-wise error of 2.8% or
    less up to a per-model AUC SD of 0.02, where "excess" reaches 5.5-6.2%). The reference
    distribution is t with Welch–Satterthwaite degrees of freedom
    df = Var**2 (R - 1) / (M / R)**2 (DeLong's part counts as known). With R = 1 there is no
    estimate of M: the test is DeLong's alone and ``reason`` says that training noise is ignored.
    """
    if seed_variance not in ("excess", "full"):
        raise CxrbsError(f"seed_variance must be 'excess' or 'full'; got {seed_variance!r}")
    a = np.atleast_2d(np.asarray(scores_a, dtype=float))
    b = np.atleast_2d(np.asarray(scores_b, dtype=float))
    if a.shape != b.shape:
        raise CxrbsError(f"scores_a and scores_b must have the same (repeats, images) shape; got "
                         f"{a.shape} and {b.shape}")
    n_rep = a.shape[0]
    pooled = delong_test(y_true, a.mean(axis=0), b.mean(axis=0), alpha)
    if n_rep > 1:
        each = [delong_test(y_true, a[r], b[r], alpha) for r in range(n_rep)]
        per_repeat = [float(e["difference"]) for e in each]
        seed_var = float(np.var(per_repeat, ddof=1))
        seen = (float(np.mean([e["se"] ** 2 for e in each])) - pooled["se"] ** 2) * n_rep / (
            n_rep - 1)
        model_var = max(seed_var - max(seen, 0.0), 0.0) if seed_variance == "excess" else seed_var
    else:
        per_repeat, seed_var, model_var = [pooled["difference"]], 0.0, 0.0
    var = pooled["se"] ** 2 + model_var / n_rep
    se = float(np.sqrt(var))
    df = (float("inf") if not model_var > 0 else
          float(var**2 * (n_rep - 1) / (model_var / n_rep) ** 2))
    diff = pooled["difference"]
    out = {"difference": diff, "auc_a": pooled["auc_a"], "auc_b": pooled["auc_b"], "se": se,
           "se_delong": pooled["se"], "seed_sd": float(np.sqrt(seed_var)) if n_rep > 1 else
           float("nan"), "model_sd": float(np.sqrt(model_var)) if n_rep > 1 else float("nan"),
           "df": df, "repeats": n_rep, "per_repeat": per_repeat,
           "p_value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "reason": pooled["reason"]}
    if se > 0:
        q = float(sps.t.ppf(1 - alpha / 2, df))
        out.update(p_value=float(2 * sps.t.sf(abs(diff) / se, df)),
                   ci_low=diff - q * se, ci_high=diff + q * se)
    elif diff == 0:
        out.update(p_value=1.0, ci_low=0.0, ci_high=0.0)
    else:
        out["reason"] = out["reason"] or "zero standard error with unequal AUCs"
    if n_rep == 1:
        out["reason"] = "; ".join(filter(None, [out["reason"], (
            "one fine-tuning repeat: seed-to-seed training variance is not estimated and the "
            "p-value treats the fitted models as fixed (set cls.repeats >= 5)")]))
    return out


def equivalence_test(difference: float, se: float, margin: float, df: float = float("inf"),
                     alpha: float = 0.05) -> dict[str, Any]:
    """Two one-sided tests (TOST) of |difference| < margin, and the matching (1 - 2 alpha) CI.

    Equivalence is shown when p < alpha, i.e. when the (1 - 2 alpha) CI lies inside
    (-margin, margin): a non-significant difference is never read as "no difference".
    """
    if not (np.isfinite(difference) and np.isfinite(se) and margin > 0):
        return {"p_value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "equivalent": False, "reason": "difference or standard error undefined"}
    if se == 0:
        p = 0.0 if abs(difference) < margin else 1.0
        return {"p_value": p, "ci_low": difference, "ci_high": difference,
                "equivalent": p < alpha, "reason": ""}
    p_low = float(sps.t.sf((difference + margin) / se, df))
    p_high = float(sps.t.cdf((difference - margin) / se, df))
    p = max(p_low, p_high)
    q = float(sps.t.ppf(1 - alpha, df))
    return {"p_value": p, "ci_low": difference - q * se, "ci_high": difference + q * se,
            "equivalent": p < alpha, "reason": ""}


def hanley_mcneil_variance(auc: float, n_pos: int, n_neg: int) -> float:
    """Variance of one empirical AUC (Hanley & McNeil, Radiology 1982, exponential approximation)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return float((auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2))
                 / (n_pos * n_neg))


def detectable_auc_difference(n_pos: int, n_neg: int, *, auc: float = 0.85,
                              correlation: float = 0.5, model_sd: float = 0.0, repeats: int = 1,
                              alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest ΔAUC the primary test detects with ``power`` at two-sided ``alpha`` (issue 22).

    Normal approximation: MDE = (z_{1-alpha/2} + z_power) * SE(ΔAUC), with
    SE**2 = 2 Var_HM(auc) (1 - correlation) + 2 model_sd**2 / repeats: two correlated AUCs on the
    same images (Hanley–McNeil variance, ``correlation`` between the two arms' AUC estimates) plus
    the seed-to-seed spread of each arm's fitted model (per-model AUC SD ``model_sd``), averaged
    over ``repeats`` seeds.
    """
    var = (2 * hanley_mcneil_variance(auc, n_pos, n_neg) * (1 - correlation)
           + 2 * model_sd**2 / max(int(repeats), 1))
    return float((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * np.sqrt(var))


def serial_gatekeeping(p_gate: Any, p_next: Any) -> np.ndarray:
    """Adjusted p of a second family tested only after EVERY hypothesis of the first is rejected.

    Serial gatekeeping (Dmitrienko & Tamhane 2007): the second family is Holm-adjusted within
    itself and each adjusted p is raised to the largest adjusted p of the first family, so the
    family-wise error over both families stays at alpha and the first family's p are unchanged.
    """
    gate = np.asarray(p_gate, dtype=float)
    gate_max = float(np.max(np.where(np.isfinite(gate), gate, 1.0))) if gate.size else 1.0
    return np.maximum(holm(p_next), gate_max)
