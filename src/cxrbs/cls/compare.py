"""The comparison table: bone-suppressed vs baseline on the same images, one pre-specified primary
endpoint, every other comparison secondary, and Holm-adjusted p-values beside the raw ones.

Why a declared primary endpoint: the study's claim is "bone suppression improves TB detection".
Testing seven metrics with several tests on every TB data set and calling any p < 0.05 a finding
makes a false positive likely even when the two arms are equally good (about one run in three at
the sizes of Shenzhen and Montgomery). So one comparison per TB data set is primary, named in the
config (``cls.primary_endpoint``) before any result exists: the pooled out-of-fold AUC difference,
bone_suppressed - baseline, by DeLong's test, Holm-adjusted across the TB data sets. Everything
else is secondary and is Holm-adjusted within the secondary family (all other rows of the table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from cxrbs.cls.metrics import METRICS, binary_metrics, threshold_predictions
from cxrbs.cls.stats import (
    TEST_DELONG,
    TEST_MCNEMAR,
    delong_test,
    holm,
    mcnemar_test,
    nadeau_bengio_test,
    sign_flip_test,
)
from cxrbs.core import names
from cxrbs.core.errors import CxrbsError

VARIANTS = names.VARIANTS
OPTIONAL_VARIANTS = names.OPTIONAL_VARIANTS
PREDICTION_COLUMNS = ("image", "patient", "label", "probability", "fold", "variant", "dataset")
#: The only primary endpoint the code implements; the config must name it (cls.primary_endpoint).
PRIMARY_ENDPOINT = ("pooled out-of-fold AUC difference, bone_suppressed − baseline, DeLong, "
                    "Holm across TB data sets")
PRIMARY_CONTRAST = ("bone_suppressed", "baseline")
#: With the control arm: does any image change help (control - baseline), and does removing bones
#: help more than an equally large change that leaves them (bone_suppressed - control)?
CONTROL_CONTRASTS = (("control", "baseline"), ("bone_suppressed", "control"))
ADJUST_PRIMARY = "Holm across TB data sets (primary family)"
ADJUST_SECONDARY = "Holm across all secondary rows"
FOLD_CI_METHOD = "Nadeau–Bengio corrected t (k−1 df)"
ADJUST_REPEAT = "Holm across TB data sets within the repeat"
COLUMNS = ["dataset", "repeat", "contrast", "arm", "reference", "family", "metric", "estimate",
           "value_arm", "value_reference", "difference", "ci_low", "ci_high", "ci_method", "test",
           "p_value", "p_adjusted", "adjustment", "fold_mean_arm", "fold_sd_arm",
           "fold_mean_reference", "fold_sd_reference", "note"]


def fold_test_name(n_folds: int) -> str:
    return f"exact sign-flip permutation over {n_folds} folds"


def _paired_accuracy_ci(b: int, c: int, n: int, alpha: float) -> tuple[float, float]:
    """Wald CI of acc_a - acc_b = (b - c)/n for paired proportions (Agresti 2013, sec. 11.1).

    statsmodels has no paired-proportion interval; McNemar itself gives only a p-value.
    """
    d = (b - c) / n
    se = np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    half = sps.norm.ppf(1 - alpha / 2) * se
    return float(d - half), float(d + half)


def _paired_frames(predictions: pd.DataFrame, dataset: str,
                   variants: tuple[str, str] = ("baseline", "bone_suppressed"),
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two variants' rows of one dataset, aligned by image; refuse mismatches."""
    sub = predictions[predictions["dataset"] == dataset]
    frames = []
    for variant in variants:
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
    if not set(VARIANTS) <= variants <= set(VARIANTS + OPTIONAL_VARIANTS):
        raise CxrbsError(
            f"predictions column 'variant' must hold {list(VARIANTS)} (and optionally "
            f"{list(OPTIONAL_VARIANTS)}); got {sorted(variants)}"
        )


def _mean_sd(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def _compare_dataset(base: pd.DataFrame, bs: pd.DataFrame, dataset: str, threshold: float,
                     alpha: float, contrast: tuple[str, str] = PRIMARY_CONTRAST,
                     ) -> list[dict[str, Any]]:
    """All rows of one contrast (arm ``bs`` minus reference ``base``) on one data set."""
    arm, ref = contrast
    is_primary = contrast == PRIMARY_CONTRAST
    y = base["label"].to_numpy()
    p_base, p_bs = base["probability"].to_numpy(), bs["probability"].to_numpy()
    fold = base["fold"].to_numpy()
    folds = sorted(np.unique(fold))
    per_fold = {
        variant: [binary_metrics(y[fold == f], prob[fold == f], threshold) for f in folds]
        for variant, prob in (("baseline", p_base), ("bone_suppressed", p_bs))
    }

    def spread(metric: str) -> dict[str, float]:
        mb, sb = _mean_sd([r[metric] for r in per_fold["baseline"]])
        ma, sa = _mean_sd([r[metric] for r in per_fold["bone_suppressed"]])
        return {"fold_mean_reference": mb, "fold_sd_reference": sb,
                "fold_mean_arm": ma, "fold_sd_arm": sa}

    def row(metric: str, estimate: str, base_v: float, bs_v: float, diff: float, ci: tuple,
            ci_method: str, test: str, p: float, family: str, note: str) -> dict[str, Any]:
        return {"dataset": dataset, "contrast": f"{arm} − {ref}", "arm": arm, "reference": ref,
                "family": family, "metric": metric,
                "estimate": estimate, "value_reference": base_v, "value_arm": bs_v,
                "difference": diff, "ci_low": ci[0], "ci_high": ci[1], "ci_method": ci_method,
                "test": test, "p_value": p, **spread(metric), "note": note}

    rows = []
    d = delong_test(y, p_bs, p_base, alpha)
    note = "primary endpoint (cls.primary_endpoint)" if is_primary else "control-arm contrast"
    if d["reason"]:
        note += "; " + d["reason"]
    rows.append(row("auc", "pooled out-of-fold", d["auc_b"], d["auc_a"], d["difference"],
                    (d["ci_low"], d["ci_high"]), "DeLong (normal approximation)", TEST_DELONG,
                    d["p_value"], "primary" if is_primary else "secondary", note))
    k = len(folds)
    for metric in METRICS:
        a_vals = [r[metric] for r in per_fold["bone_suppressed"]]
        b_vals = [r[metric] for r in per_fold["baseline"]]
        sf = sign_flip_test(a_vals, b_vals)
        nb = nadeau_bengio_test(a_vals, b_vals, alpha)
        notes = [f"smallest attainable two-sided p with {k} folds is {sf['min_p']:.3g}",
                 f"Nadeau–Bengio corrected t p = {nb['p_value']:.3g}"]
        notes += [r for r in dict.fromkeys((sf["reason"], nb["reason"])) if r]
        sp = spread(metric)
        rows.append(row(metric, f"mean of {k} folds", sp["fold_mean_reference"],
                        sp["fold_mean_arm"], sf["difference"],
                        (nb["ci_low"], nb["ci_high"]), FOLD_CI_METHOD, fold_test_name(k),
                        sf["p_value"], "secondary", "; ".join(notes)))
    pred_base = threshold_predictions(p_base, threshold)
    pred_bs = threshold_predictions(p_bs, threshold)
    mc = mcnemar_test(y, pred_bs, pred_base)
    acc_base, acc_bs = float(np.mean(pred_base == y)), float(np.mean(pred_bs == y))
    rows.append(row("accuracy", "pooled out-of-fold", acc_base, acc_bs, acc_bs - acc_base,
                    _paired_accuracy_ci(mc["b"], mc["c"], y.size, alpha),
                    "Wald interval for paired proportions", TEST_MCNEMAR, mc["p_value"],
                    "secondary", f"McNemar {mc['method']}"))
    return rows


def adjust_families(table: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p per family: primary across data sets, secondary across its own rows."""
    out = table.copy()
    out["p_adjusted"] = np.nan
    out["adjustment"] = ""
    for family, label in (("primary", ADJUST_PRIMARY), ("secondary", ADJUST_SECONDARY)):
        mask = out["family"] == family
        if mask.any():
            out.loc[mask, "p_adjusted"] = holm(out.loc[mask, "p_value"].to_numpy(dtype=float))
            out.loc[mask, "adjustment"] = label
    for repeat in out.loc[out["family"] == "primary per repeat", "repeat"].unique():
        mask = (out["family"] == "primary per repeat") & (out["repeat"] == repeat)
        out.loc[mask, "p_adjusted"] = holm(out.loc[mask, "p_value"].to_numpy(dtype=float))
        out.loc[mask, "adjustment"] = ADJUST_REPEAT
    return out


def _mean_over_repeats(predictions: pd.DataFrame) -> pd.DataFrame:
    """One prediction per image and variant: the probability averaged over the repeats."""
    keys = ["dataset", "variant", "image", "patient", "label", "fold"]
    counts = predictions.groupby(keys, sort=False)["repeat"].nunique()
    if counts.nunique() != 1:
        raise CxrbsError("predictions: every image needs the same number of fine-tuning repeats "
                         "in both variants; rerun the missing repeats")
    return predictions.groupby(keys, sort=False, as_index=False)["probability"].mean()


def _per_repeat_rows(predictions: pd.DataFrame, threshold: float,
                     alpha: float) -> list[dict[str, Any]]:
    """The primary endpoint per repeat (family 'primary per repeat', not part of the primary)."""
    rows = []
    for repeat in sorted(predictions["repeat"].unique()):
        part = predictions[predictions["repeat"] == repeat]
        for dataset in sorted(part["dataset"].unique()):
            base, bs = _paired_frames(part, dataset)
            row = _compare_dataset(base, bs, dataset, threshold, alpha)[0]  # the primary row
            rows.append({**row, "repeat": str(repeat), "family": "primary per repeat",
                         "note": "primary endpoint on this repeat alone (seed-to-seed spread)"})
    return rows


def compare_variants(
    predictions: pd.DataFrame, *, threshold: float = 0.5, alpha: float = 0.05,
    primary_endpoint: str = PRIMARY_ENDPOINT,
) -> pd.DataFrame:
    """Baseline vs bone-suppressed, per dataset: the primary row first, then secondary rows.

    With a ``control`` variant, the contrasts control - baseline and bone_suppressed - control
    follow, all secondary: bone removal (not merely changing the images) is supported when
    bone_suppressed beats both baseline and control while control does not beat baseline.
    ``value_arm``/``value_reference`` hold the two sides of ``contrast`` (arm - reference).

    ``predictions`` holds one out-of-fold prediction per image and variant (columns image,
    patient, label, probability, fold, variant, dataset). Per data set: the primary endpoint
    (pooled AUC by DeLong); for each of the seven metrics the exact sign-flip test over folds
    (values = mean of per-fold values, CI by the Nadeau-Bengio corrected t);
    accuracy by McNemar on the pooled predictions (Wald CI for paired proportions).
    ``difference`` = bone_suppressed - baseline. With a ``repeat`` column holding several
    fine-tuning repeats, these rows use the probabilities averaged over the repeats, and the primary
    endpoint is also given per repeat (family 'primary per repeat', Holm across data sets within
    each repeat; the primary row's note lists the per-repeat differences and their SD).
    ``p_value`` is raw, ``p_adjusted`` Holm within the row's ``family``; ``fold_mean_*``/``fold_sd_*`` give every metric's per-fold mean and SD, so
    the pooled AUC (which mixes the folds' score scales) always has the per-fold AUC beside it.
    """
    if primary_endpoint != PRIMARY_ENDPOINT:
        raise CxrbsError(f"cls.primary_endpoint must be {PRIMARY_ENDPOINT!r} (the only one "
                         f"implemented); got {primary_endpoint!r}")
    _check_predictions(predictions)
    n_repeats = int(predictions["repeat"].nunique()) if "repeat" in predictions else 1
    pooled = _mean_over_repeats(predictions) if n_repeats > 1 else predictions
    label = f"mean of {n_repeats} repeats" if n_repeats > 1 else "0"
    contrasts = [PRIMARY_CONTRAST]
    if "control" in set(predictions["variant"]):
        contrasts += list(CONTROL_CONTRASTS)
    rows: list[dict[str, Any]] = []
    for dataset in sorted(pooled["dataset"].unique()):
        for arm, ref in contrasts:
            base, bs = _paired_frames(pooled, dataset, (ref, arm))
            rows.extend({**r, "repeat": label} for r in
                        _compare_dataset(base, bs, dataset, threshold, alpha, (arm, ref)))
    if n_repeats > 1:
        per_repeat = _per_repeat_rows(predictions, threshold, alpha)
        for r in rows:
            if r["family"] == "primary":
                diffs = [x["difference"] for x in per_repeat if x["dataset"] == r["dataset"]]
                r["note"] += ("; AUC difference per repeat: "
                              + ", ".join(f"{d:.4f}" for d in diffs)
                              + f" (SD {np.std(diffs, ddof=1):.4f}); test on the probabilities "
                              f"averaged over the {n_repeats} repeats")
        rows.extend(per_repeat)
    return adjust_families(pd.DataFrame(rows))[COLUMNS]
