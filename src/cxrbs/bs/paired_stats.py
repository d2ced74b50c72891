"""Paired per-image tests of bone-suppression models against the identity baseline (issues 12, 22).

Every model is scored on the same pairs as the identity baseline (prediction = input), so the
comparison is paired, image by image. One estimand per test, so that the direction, the interval
and the p-value all come from the same statistic (issue 22: a mean-based direction beside a
rank-based p could point the wrong way, e.g. worse on 42 of 49 images with a positive mean):

* estimand: the Hodges–Lehmann pseudo-median of the per-image differences a − b (the median of
  the Walsh averages (d_i + d_j)/2, i <= j), the location shift the Wilcoxon signed-rank test
  tests;
* test: the Wilcoxon signed-rank test (scipy; exact null distribution for n <= 50 without ties or
  zero differences, normal approximation with tie correction otherwise);
* interval: the matching distribution-free CI, by inverting that same signed-rank test (order
  statistics of the Walsh averages; Hollander & Wolfe, Nonparametric Statistical Methods, 3.2).

Contrasts per test set: each model vs identity, and the selected model vs each other model; all
p-values of one test set form one family and are Holm-adjusted together. A model "beats" the
other only when the adjusted p is below alpha AND the CI lies entirely on the better side of 0:
never from a mean alone. The validation pairs the model was selected on are tested too, but that
row is biased by the selection and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from cxrbs.bs.evaluate import HIGHER_IS_BETTER, METRICS, SELECTION_SET
from cxrbs.core.errors import CxrbsError
from cxrbs.stats import holm

IDENTITY = "identity"
TEST_WILCOXON = "Wilcoxon signed-rank (per image)"
ESTIMAND = "Hodges–Lehmann median of the per-image differences"
CI_METHOD = "inverted Wilcoxon signed-rank test (Walsh averages)"
#: Exact signed-rank null distribution up to this many pairs (scipy's own limit for 'exact').
EXACT_MAX_N = 50
COLUMNS = ["test_set", "metric", "model_a", "model_b", "contrast", "n", "mean_a", "mean_b",
           "difference", "ci_low", "ci_high", "ci_method", "test", "p_value", "p_adjusted",
           "adjustment", "a_better", "estimand", "mean_difference", "n_a_better", "note"]


def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= t), t = 0..n(n+1)/2, for n untied non-zero differences (exact, by counting)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return np.cumsum(counts) / 2.0**n


def _walsh_averages(d: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(d.size)
    return np.sort((d[i] + d[j]) / 2.0)


def hodges_lehmann_ci(d: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, bool]:
    """Hodges–Lehmann estimate and its (1 - alpha) CI from the signed-rank test; exact or not.

    The CI is [W_(k), W_(N+1-k)] of the N = n(n+1)/2 sorted Walsh averages, with k - 1 the largest
    signed-rank value whose lower tail probability is <= alpha/2. NaN limits when n is too small
    for any (1 - alpha) interval (n <= 5 at alpha = 0.05): the test cannot reject either.
    """
    walsh = _walsh_averages(d)
    big_n = walsh.size
    estimate = float(np.median(walsh))
    nz = d[d != 0]
    exact = nz.size == d.size and d.size <= EXACT_MAX_N and np.unique(np.abs(d)).size == d.size
    if exact:
        cdf = _signed_rank_cdf(d.size)
        k = int(np.searchsorted(cdf, alpha / 2, side="right"))  # count of t with cdf(t) <= a/2
    else:
        ranks = sps.rankdata(np.abs(d))
        var = float(np.sum(ranks**2)) / 4.0  # tie-corrected variance of T+
        k = int(np.floor(big_n / 2.0 - sps.norm.ppf(1 - alpha / 2) * np.sqrt(var)))
    if k < 1:
        return estimate, float("nan"), float("nan"), exact
    return estimate, float(walsh[k - 1]), float(walsh[big_n - k]), exact


def paired_difference_test(a: Any, b: Any, *, n_boot: int | None = None,
                           seed: int | np.random.Generator | None = None,
                           alpha: float = 0.05) -> dict[str, Any]:
    """Wilcoxon signed-rank p, Hodges–Lehmann estimate and its matching CI of a - b, NaN-safe.

    ``difference`` is the Hodges–Lehmann estimate (the tested location shift); ``mean_difference``
    is the plain mean, for information only. ``n_boot`` and ``seed`` are accepted for older
    callers and unused: the interval is exact or asymptotic, not resampled. Pairs with a missing
    value on either side are dropped (a NaN BSR of a pair without bone signal). All-zero
    differences (identical outputs) or fewer than 2 pairs give NaN with ``reason``.
    """
    del n_boot, seed
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CxrbsError(f"paired test needs two equal-length 1-D arrays; got {x.shape}, {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    out: dict[str, Any] = {"n": int(d.size), "difference": np.nan,
                           "mean_difference": float(d.mean()) if d.size else np.nan,
                           "n_positive": int(np.sum(d > 0)), "n_negative": int(np.sum(d < 0)),
                           "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
                           "exact": False, "reason": ""}
    if d.size < 2:
        out["reason"] = f"only {d.size} pair(s) with values on both sides"
        return out
    if not np.any(d != 0):
        out.update(difference=0.0,
                   reason="every per-image difference is 0 (identical outputs): nothing to test")
        return out
    estimate, low, high, exact = hodges_lehmann_ci(d, alpha)
    method = "exact" if exact else "asymptotic"
    out.update(difference=estimate, ci_low=low, ci_high=high, exact=exact,
               p_value=float(sps.wilcoxon(d, method=method).pvalue))
    if not np.isfinite(low):
        out["reason"] = f"{d.size} pairs are too few for a {1 - alpha:.0%} signed-rank interval"
    return out


def favours(difference: float, ci_low: float, ci_high: float, higher_is_better: bool) -> bool:
    """True when the estimate and the whole CI lie on the better side of 0."""
    if not (np.isfinite(difference) and np.isfinite(ci_low) and np.isfinite(ci_high)):
        return False
    return bool(ci_low > 0 and difference > 0) if higher_is_better else bool(
        ci_high < 0 and difference < 0)


def _wide(per_image: pd.DataFrame, test_set: str, metric: str) -> pd.DataFrame:
    """One column per model, one row per image name, for one test set and metric."""
    sub = per_image[per_image["test_set"] == test_set]
    dup = sub.duplicated(["arch", "name"])
    if dup.any():
        raise CxrbsError(f"per-image evaluation of {test_set!r} lists image "
                         f"{sub.loc[dup, 'name'].iloc[0]!r} twice for one model")
    return sub.pivot(index="name", columns="arch", values=metric)


def paired_tests(per_image: pd.DataFrame, *, selected: str, n_boot: int | None = None,
                 seed: int | None = None, alpha: float = 0.05,
                 metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Every model vs identity, and ``selected`` vs every other model, on every evaluated set.

    ``difference``/``ci_low``/``ci_high`` are the Hodges–Lehmann estimate and its signed-rank CI;
    ``a_better`` is True only when the Holm-adjusted p < ``alpha`` and the whole CI lies on the
    better side of 0 for the metric (lower MAE, higher PSNR...). ``n_boot``/``seed``: unused.
    """
    need = {"arch", "test_set", "name", *metrics}
    if not need <= set(per_image.columns):
        raise CxrbsError(f"per-image evaluation lacks column(s) {sorted(need - set(per_image))}")
    rows: list[dict[str, Any]] = []
    for test_set in sorted(per_image["test_set"].astype(str).unique()):
        family: list[dict[str, Any]] = []
        for metric in metrics:
            wide = _wide(per_image, test_set, metric)
            models = sorted(c for c in wide.columns if c != IDENTITY)
            pairs = [(m, IDENTITY, "model vs identity") for m in models if IDENTITY in wide]
            if selected in wide:
                pairs += [(selected, m, "selected vs other model") for m in models if m != selected]
            for a, b, contrast in pairs:
                res = paired_difference_test(wide[a].to_numpy(), wide[b].to_numpy(), alpha=alpha)
                higher = HIGHER_IS_BETTER[metric]
                note = res["reason"]
                if test_set == SELECTION_SET:
                    note = "; ".join(filter(None, [note, "selection set: biased in favour of the "
                                                   "selected model, not a test result"]))
                family.append({
                    "test_set": test_set, "metric": metric, "model_a": a, "model_b": b,
                    "contrast": contrast, "n": res["n"], "mean_a": float(np.nanmean(wide[a])),
                    "mean_b": float(np.nanmean(wide[b])), "difference": res["difference"],
                    "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                    "ci_method": CI_METHOD + (" (exact)" if res["exact"] else " (normal approx.)"),
                    "test": TEST_WILCOXON, "p_value": res["p_value"], "estimand": ESTIMAND,
                    "mean_difference": res["mean_difference"],
                    "n_a_better": res["n_positive"] if higher else res["n_negative"],
                    "note": note, "_higher": higher})
        adjusted = holm([r["p_value"] for r in family])
        for r, p_adj in zip(family, adjusted, strict=True):
            higher = r.pop("_higher")
            r.update(p_adjusted=float(p_adj), adjustment=f"Holm within test set {test_set}",
                     a_better=bool(np.isfinite(p_adj) and p_adj < alpha
                                   and favours(r["difference"], r["ci_low"], r["ci_high"],
                                               higher)))
        rows.extend(family)
    return pd.DataFrame(rows, columns=COLUMNS)


def identity_verdict(paired: pd.DataFrame, *, selected: str, metric: str,
                     alpha: float = 0.05) -> dict[str, Any]:
    """For best.json: the selected model vs identity on ``metric``, per evaluated set.

    ``significantly_better``: Holm-adjusted p < alpha and the Hodges–Lehmann CI entirely on the
    better side of 0 (so a rank test that rejects because the model is WORSE on most images can
    never read as "better", whatever the mean does).
    """
    rows = paired[(paired["model_a"] == selected) & (paired["model_b"] == IDENTITY)
                  & (paired["metric"] == metric)]
    higher = HIGHER_IS_BETTER[metric]
    out = {}
    for r in rows.itertuples(index=False):
        better = bool(np.isfinite(r.p_adjusted) and r.p_adjusted < alpha
                      and favours(r.difference, r.ci_low, r.ci_high, higher))
        worse = bool(np.isfinite(r.p_adjusted) and r.p_adjusted < alpha
                     and favours(r.difference, r.ci_low, r.ci_high, not higher))
        out[str(r.test_set)] = {
            "difference": float(r.difference), "ci": [float(r.ci_low), float(r.ci_high)],
            "estimand": ESTIMAND, "p_value": float(r.p_value), "p_adjusted": float(r.p_adjusted),
            "significantly_better": better, "significantly_worse": worse,
            "test": TEST_WILCOXON, "adjustment": str(r.adjustment)}
    return out
