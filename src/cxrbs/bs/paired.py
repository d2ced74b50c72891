"""Paired per-image tests of bone-suppression models against the identity baseline (issue 12).

"Beats identity" used to compare two means. Every model is scored on the same pairs as the
identity baseline (prediction = input), so the right comparison is paired, image by image: the
Wilcoxon signed-rank test (scipy; no normality assumption for PSNR/SSIM differences) and a seeded
percentile bootstrap CI of the mean difference. Contrasts per test set: each model vs identity,
and the selected model vs each other model; all p-values of one test set form one family and are
Holm-adjusted together. The validation pairs the model was selected on are tested too, but that
row is biased by the selection and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from cxrbs.bs.evaluate import HIGHER_IS_BETTER, METRICS, SELECTION_SET
from cxrbs.cls.stats import holm
from cxrbs.core.errors import CxrbsError

IDENTITY = "identity"
TEST_WILCOXON = "Wilcoxon signed-rank (per image)"
COLUMNS = ["test_set", "metric", "model_a", "model_b", "contrast", "n", "mean_a", "mean_b",
           "difference", "ci_low", "ci_high", "ci_method", "test", "p_value", "p_adjusted",
           "adjustment", "a_better", "note"]


def paired_difference_test(a: Any, b: Any, *, n_boot: int, seed: int | np.random.Generator,
                           alpha: float = 0.05) -> dict[str, Any]:
    """Wilcoxon signed-rank p and a percentile-bootstrap CI of mean(a - b), NaN-safe.

    Pairs with a missing value on either side are dropped (a NaN BSR of a pair without bone
    signal). All-zero differences (identical outputs) or fewer than 2 pairs give NaN with
    ``reason``: there is nothing to rank or resample.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise CxrbsError(f"paired test needs two equal-length 1-D arrays; got {x.shape}, {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    out: dict[str, Any] = {"n": int(d.size), "difference": float(d.mean()) if d.size else np.nan,
                           "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "reason": ""}
    if d.size < 2:
        out["reason"] = f"only {d.size} pair(s) with values on both sides"
        return out
    if not np.any(d != 0):
        out["reason"] = "every per-image difference is 0 (identical outputs): nothing to test"
        return out
    out["p_value"] = float(sps.wilcoxon(d).pvalue)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ci = sps.bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha,
                       method="percentile", rng=rng).confidence_interval
    out.update(ci_low=float(ci.low), ci_high=float(ci.high))
    return out


def _wide(per_image: pd.DataFrame, test_set: str, metric: str) -> pd.DataFrame:
    """One column per model, one row per image name, for one test set and metric."""
    sub = per_image[per_image["test_set"] == test_set]
    dup = sub.duplicated(["arch", "name"])
    if dup.any():
        raise CxrbsError(f"per-image evaluation of {test_set!r} lists image "
                         f"{sub.loc[dup, 'name'].iloc[0]!r} twice for one model")
    return sub.pivot(index="name", columns="arch", values=metric)


def paired_tests(per_image: pd.DataFrame, *, selected: str, n_boot: int, seed: int,
                 alpha: float = 0.05, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Every model vs identity, and ``selected`` vs every other model, on every evaluated set."""
    need = {"arch", "test_set", "name", *metrics}
    if not need <= set(per_image.columns):
        raise CxrbsError(f"per-image evaluation lacks column(s) {sorted(need - set(per_image))}")
    rng = np.random.default_rng(seed)
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
                res = paired_difference_test(wide[a].to_numpy(), wide[b].to_numpy(),
                                             n_boot=n_boot, seed=rng, alpha=alpha)
                higher = HIGHER_IS_BETTER[metric]
                diff = res["difference"]
                note = res["reason"]
                if test_set == SELECTION_SET:
                    note = "; ".join(filter(None, [note, "selection set: biased in favour of the "
                                                   "selected model, not a test result"]))
                family.append({
                    "test_set": test_set, "metric": metric, "model_a": a, "model_b": b,
                    "contrast": contrast, "n": res["n"], "mean_a": float(np.nanmean(wide[a])),
                    "mean_b": float(np.nanmean(wide[b])), "difference": diff,
                    "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                    "ci_method": f"percentile bootstrap of the mean difference ({n_boot} resamples)",
                    "test": TEST_WILCOXON, "p_value": res["p_value"],
                    "a_better": bool(np.isfinite(diff) and diff != 0 and (diff > 0) == higher),
                    "note": note})
        adjusted = holm([r["p_value"] for r in family])
        for r, p_adj in zip(family, adjusted, strict=True):
            r.update(p_adjusted=float(p_adj), adjustment=f"Holm within test set {test_set}")
        rows.extend(family)
    return pd.DataFrame(rows, columns=COLUMNS)


def identity_verdict(paired: pd.DataFrame, *, selected: str, metric: str,
                     alpha: float = 0.05) -> dict[str, Any]:
    """For best.json: the selected model vs identity on ``metric``, per evaluated set."""
    rows = paired[(paired["model_a"] == selected) & (paired["model_b"] == IDENTITY)
                  & (paired["metric"] == metric)]
    out = {}
    for r in rows.itertuples(index=False):
        out[str(r.test_set)] = {
            "difference": float(r.difference), "ci": [float(r.ci_low), float(r.ci_high)],
            "p_value": float(r.p_value), "p_adjusted": float(r.p_adjusted),
            "significantly_better": bool(r.a_better and r.p_adjusted < alpha),
            "test": TEST_WILCOXON, "adjustment": str(r.adjustment)}
    return out
