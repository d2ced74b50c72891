"""The study's seven classification metrics, with confidence intervals.

Point estimates come from scikit-learn. Intervals: Wilson (statsmodels) for the proportion
metrics and DeLong for AUC when every image is its own patient; otherwise (and always for F1 and
MCC) a percentile bootstrap that resamples whole patients, because images of one patient are
correlated and resampling them one by one would make the intervals too narrow. The bootstrap is
vectorised: each replicate is a vector of integer image weights (how often its patient was drawn),
and all replicates' metrics come from weighted confusion counts and a weighted Mann-Whitney AUC.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_score,
    roc_auc_score,
)
from statsmodels.stats.proportion import proportion_confint

from cxrbs.core.errors import CxrbsError
from cxrbs.cls.stats import _as_labels, _as_scores, delong_auc_ci

METRICS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "mcc")
_PROPORTIONS = ("accuracy", "sensitivity", "specificity", "precision")
#: Bootstrap replicates are processed in blocks of about this many (replicate, image) cells.
_BLOCK_CELLS = 2_000_000


def threshold_predictions(prob: Any, threshold: float) -> np.ndarray:
    """1 where prob > threshold; strict so that 0.5 matches argmax of a 2-way softmax."""
    return (np.asarray(prob, dtype=float) > threshold).astype(int)


def binary_metrics(y_true: Any, prob: Any, threshold: float = 0.5) -> dict[str, float]:
    """The seven metrics (TB/abnormal = positive class 1).

    Undefined values are NaN rather than errors, so one degenerate fold does not stop a run:
    AUC with a single class, sensitivity without positives, specificity without negatives.
    Precision, F1 and MCC follow scikit-learn's zero-division convention (0).
    """
    y = _as_labels(y_true)
    p = _as_scores(prob, y.size, "prob")
    pred = threshold_predictions(p, threshold)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = 0 < y.sum() < y.size
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "mcc": float(matthews_corrcoef(y, pred)),
    }


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(num.shape, empty, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _weighted_auc(y: np.ndarray, scores: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC for each row of image weights w (B, N); ties count one half."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    start = np.searchsorted(s, s, side="left")
    stop = np.searchsorted(s, s, side="right")
    ws = w[:, order]
    w_pos = ws * (y[order] == 1)
    w_neg = ws * (y[order] == 0)
    cum_neg = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w_neg, axis=1, out=cum_neg[:, 1:])
    below, upto = cum_neg[:, start], cum_neg[:, stop]
    num = np.sum(w_pos * (below + 0.5 * (upto - below)), axis=1)
    return _ratio(num, w_pos.sum(axis=1) * w_neg.sum(axis=1), np.nan)


def _weighted_metrics(
    y: np.ndarray, prob: np.ndarray, w: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    """All seven metrics for each row of image weights, same conventions as `binary_metrics`."""
    pred = threshold_predictions(prob, threshold)
    tp = w @ ((y == 1) & (pred == 1)).astype(float)
    fp = w @ ((y == 0) & (pred == 1)).astype(float)
    tn = w @ ((y == 0) & (pred == 0)).astype(float)
    fn = w @ ((y == 1) & (pred == 0)).astype(float)
    mcc_den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn, np.nan),
        "auc": _weighted_auc(y, prob, w),
        "sensitivity": _ratio(tp, tp + fn, np.nan),
        "specificity": _ratio(tn, tn + fp, np.nan),
        "precision": _ratio(tp, tp + fp, 0.0),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        "mcc": _ratio(tp * tn - fp * fn, mcc_den, 0.0),
    }


def _group_codes(groups: Any, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise CxrbsError(
            f"groups (patient ids) must have one entry per image ({n}); got shape {g.shape}"
        )
    codes = pd.factorize(g)[0]
    if (codes < 0).any():
        raise CxrbsError("groups (patient ids) contain missing values: give every image a patient id")
    return codes


def _bootstrap(y: np.ndarray, prob: np.ndarray, codes: np.ndarray, threshold: float, n_boot: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Metrics of n_boot cluster-bootstrap replicates (NaN where a replicate lacks a class)."""
    n_groups = int(codes.max()) + 1
    block = max(1, _BLOCK_CELLS // y.size)
    parts: list[dict[str, np.ndarray]] = []
    for first in range(0, n_boot, block):
        size = min(block, n_boot - first)
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=size)
        parts.append(_weighted_metrics(y, prob, counts[:, codes].astype(float), threshold))
    return {k: np.concatenate([p[k] for p in parts]) for k in METRICS}


def _wilson(metric: str, y: np.ndarray, pred: np.ndarray, alpha: float) -> tuple[float, float]:
    success, trials = {
        "accuracy": (np.sum(pred == y), y.size),
        "sensitivity": (np.sum(pred[y == 1] == 1), np.sum(y == 1)),
        "specificity": (np.sum(pred[y == 0] == 0), np.sum(y == 0)),
        "precision": (np.sum(y[pred == 1] == 1), np.sum(pred == 1)),
    }[metric]
    if trials == 0:
        return float("nan"), float("nan")
    lo, hi = proportion_confint(int(success), int(trials), alpha=alpha, method="wilson")
    return float(lo), float(hi)


def _delong_or_nan(y: np.ndarray, prob: np.ndarray, alpha: float) -> tuple[float, float]:
    try:
        return delong_auc_ci(y, prob, alpha)
    except CxrbsError:  # fewer than 2 cases of a class: AUC interval undefined
        return float("nan"), float("nan")


def metrics_with_ci(
    y_true: Any,
    prob: Any,
    groups: Any = None,
    *,
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int | np.random.Generator = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Seven metrics with (1 - alpha) intervals; ``ci_method`` names the method of each row.

    ``groups`` are patient ids (None: every image its own patient). When every image is its own
    patient, proportions get Wilson intervals and AUC DeLong's, which need no resampling; F1 and MCC
    always use the percentile bootstrap, resampling patients. Replicates where a metric is undefined
    (e.g. no positives drawn) are left out of its percentiles.
    """
    y = _as_labels(y_true)
    p = _as_scores(prob, y.size, "prob")
    codes = _group_codes(groups, y.size)
    if n_boot < 1:
        raise CxrbsError(f"n_boot must be a positive number of bootstrap resamples; got {n_boot}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    independent = int(codes.max()) + 1 == y.size
    level = "image-level" if independent else "patient-level"
    boot_name = f"{level} percentile bootstrap ({n_boot} resamples)"
    point = binary_metrics(y, p, threshold)
    boot = _bootstrap(y, p, codes, threshold, n_boot, rng)
    pred = threshold_predictions(p, threshold)
    rows = []
    for metric in METRICS:
        if independent and metric in _PROPORTIONS:
            (lo, hi), method = _wilson(metric, y, pred, alpha), "Wilson score interval"
        elif independent and metric == "auc":
            (lo, hi), method = _delong_or_nan(y, p, alpha), "DeLong (midrank, normal approximation)"
        else:
            lo, hi = _percentiles(boot[metric], alpha)
            method = boot_name
        rows.append({"metric": metric, "value": point[metric], "ci_low": lo, "ci_high": hi,
                     "ci_method": method})
    return pd.DataFrame(rows)


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
