"""The comparison table: bone-suppressed vs baseline on the same images, one pre-specified primary
endpoint, every other comparison secondary, and Holm-adjusted p-values beside the raw ones.

Why a declared primary endpoint: the study's claim is "bone suppression improves TB detection".
Testing seven metrics with several tests on every TB data set and calling any p < 0.05 a finding
makes a false positive likely even when the two arms are equally good (about one run in three at
the sizes of Shenzhen and Montgomery). So one comparison per TB data set is primary, named in the
config (``cls.primary_endpoint``) before any result exists: the pooled out-of-fold AUC difference,
bone_suppressed - baseline, Holm-adjusted across the TB data sets.

Issue 22 made that endpoint survive a reviewer:

* the estimand is the AUC difference of the predictions averaged over the fine-tuning repeats
  (seeds), and its variance adds the between-seed variance of the per-repeat AUC difference to
  DeLong's (``delong_seed_test``): DeLong alone treats the fitted models as fixed;
* one decisive p per TB set: rows per repeat carry the estimate and the seed SD, never a p;
* with a control arm, bone_suppressed - control is a gatekept hypothesis (serial gatekeeping
  after the primary family) and control - baseline is judged by equivalence within
  ``cls.equivalence_margin`` (TOST), never by non-significance;
* the fold-level rows take p and CI from one method (Nadeau–Bengio corrected t, with the actual
  test/train sizes of the folds), so the secondary family can reject;
* decisive rows show the smallest difference their observed standard error could detect with 80%
  power, and say "underpowered" where that is larger than the effect the study claims
  (``cls.claimed_effect``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from cxrbs.cls.metrics import METRICS, binary_metrics, threshold_predictions
from cxrbs.cls.stats import (
    TEST_DELONG,
    TEST_DELONG_SEEDS,
    TEST_MCNEMAR,
    delong_seed_test,
    equivalence_test,
    holm,
    mcnemar_test,
    nadeau_bengio_test,
    serial_gatekeeping,
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
PRIMARY_ESTIMAND = ("AUC difference (bone_suppressed − baseline) of the pooled out-of-fold "
                    "predictions averaged over the fine-tuning repeats; variance = DeLong + "
                    "between-seed variance of the per-repeat AUC difference / repeats")
ADJUST_PRIMARY = "Holm across TB data sets (primary family)"
ADJUST_SECONDARY = "Holm across all secondary rows"
ADJUST_GATEKEPT = ("serial gatekeeping: Holm across TB data sets, raised to the largest primary "
                   "p_adjusted (tested only after every primary hypothesis is rejected)")
ADJUST_EQUIVALENCE = ("none: equivalence is one of the conditions that must all hold "
                      "(intersection–union)")
FOLD_CI_METHOD = "Nadeau–Bengio corrected t (k−1 df)"
FAMILY_PER_REPEAT = "per repeat (descriptive)"
#: Defaults of cls.equivalence_margin, cls.claimed_effect and the power the MDE refers to.
EQUIVALENCE_MARGIN = 0.02
CLAIMED_EFFECT = 0.03
POWER = 0.8
COLUMNS = ["dataset", "repeat", "contrast", "arm", "reference", "family", "metric", "estimate",
           "value_arm", "value_reference", "difference", "ci_low", "ci_high", "ci_method", "test",
           "p_value", "p_adjusted", "adjustment", "decision", "se", "df", "seed_sd",
           "model_sd",
           "detectable_difference", "underpowered", "fold_mean_arm", "fold_sd_arm",
           "fold_mean_reference", "fold_sd_reference", "note", "predictions",
           "min_attainable_p"]
#: Secondary rows that cannot reject (smallest attainable p >= alpha, or no p): outside Holm.
FAMILY_DESCRIPTIVE = "secondary (descriptive)"


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


def _auc_row_kind(contrast: tuple[str, str]) -> str:
    if contrast == PRIMARY_CONTRAST:
        return "primary"
    return "equivalence" if contrast == ("control", "baseline") else "gatekept"


def detectable_from_se(se: float, df: float, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest difference a test with this standard error detects with ``power`` (two-sided)."""
    if not (np.isfinite(se) and se > 0):
        return float("nan")
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se)


def _compare_dataset(base: pd.DataFrame, bs: pd.DataFrame, dataset: str, threshold: float,
                     alpha: float, contrast: tuple[str, str] = PRIMARY_CONTRAST, *,
                     auc: dict[str, Any] | None = None, margin: float = EQUIVALENCE_MARGIN,
                     claimed_effect: float = CLAIMED_EFFECT, test_train_ratio: float | None = None,
                     ) -> list[dict[str, Any]]:
    """All rows of one contrast (arm ``bs`` minus reference ``base``) on one data set.

    ``auc``: the ``delong_seed_test`` result of this contrast (repeats included); computed from
    the two frames (one repeat) when None.
    """
    arm, ref = contrast
    kind = _auc_row_kind(contrast)
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
            ci_method: str, test: str, p: float, family: str, note: str,
            **extra: Any) -> dict[str, Any]:
        return {"dataset": dataset, "contrast": f"{arm} − {ref}", "arm": arm, "reference": ref,
                "family": family, "metric": metric,
                "estimate": estimate, "value_reference": base_v, "value_arm": bs_v,
                "difference": diff, "ci_low": ci[0], "ci_high": ci[1], "ci_method": ci_method,
                "test": test, "p_value": p, **spread(metric), "note": note, **extra}

    rows = []
    d = auc if auc is not None else delong_seed_test(y, p_bs, p_base, alpha)
    reps = int(d["repeats"])
    estimate = (f"pooled out-of-fold, mean of {reps} repeats" if reps > 1
                else "pooled out-of-fold")
    test = TEST_DELONG_SEEDS if reps > 1 else TEST_DELONG
    ci_method = ("DeLong + between-seed variance, t (Satterthwaite df)" if reps > 1
                 else "DeLong (normal approximation)")
    extra = {"se": d["se"], "df": d["df"], "seed_sd": d["seed_sd"], "model_sd": d["model_sd"]}
    notes = {"primary": "primary endpoint (cls.primary_endpoint)",
             "gatekept": "control-arm contrast: gatekept after the primary family",
             "equivalence": f"control-arm contrast: equivalence within ±{margin:g} (TOST)"}
    note = notes[kind]
    if reps > 1:
        note += ("; AUC difference per repeat: " + ", ".join(f"{x:.4f}" for x in d["per_repeat"])
                 + f" (SD {d['seed_sd']:.4f}; beyond the per-image noise DeLong counts: "
                 f"{d['model_sd']:.4f}); tested on the probabilities averaged over the "
                 f"{reps} repeats")
    if d["reason"]:
        note += "; " + d["reason"]
    if kind == "equivalence":
        eq = equivalence_test(d["difference"], d["se"], margin, d["df"], alpha)
        rows.append(row("auc", estimate, d["auc_b"], d["auc_a"], d["difference"],
                        (eq["ci_low"], eq["ci_high"]), f"{1 - 2 * alpha:.0%} CI, " + ci_method,
                        f"TOST equivalence, margin ±{margin:g} ({test})", eq["p_value"],
                        "equivalence", note, **extra))
    else:
        mde = detectable_from_se(d["se"], d["df"], alpha)
        rows.append(row("auc", estimate, d["auc_b"], d["auc_a"], d["difference"],
                        (d["ci_low"], d["ci_high"]), ci_method, test, d["p_value"], kind, note,
                        detectable_difference=mde,
                        underpowered=bool(np.isfinite(mde) and mde > claimed_effect), **extra))
    k = len(folds)
    for metric in METRICS:
        a_vals = [r[metric] for r in per_fold["bone_suppressed"]]
        b_vals = [r[metric] for r in per_fold["baseline"]]
        sf = sign_flip_test(a_vals, b_vals)
        nb = nadeau_bengio_test(a_vals, b_vals, alpha, test_train_ratio=test_train_ratio)
        ratio = 1.0 / (k - 1) if test_train_ratio is None else test_train_ratio
        notes_ = [f"n_test/n_train = {ratio:.3g}",
                  f"exact sign-flip p = {sf['p_value']:.3g} (smallest attainable with {k} folds: "
                  f"{sf['min_p']:.3g})"]
        notes_ += [r for r in dict.fromkeys((sf["reason"], nb["reason"])) if r]
        sp = spread(metric)
        rows.append(row(metric, f"mean of {k} folds", sp["fold_mean_reference"],
                        sp["fold_mean_arm"], nb["difference"],
                        (nb["ci_low"], nb["ci_high"]), FOLD_CI_METHOD, fold_test_name(k),
                        nb["p_value"], "secondary", "; ".join(notes_), min_attainable_p=0.0))
    pred_base = threshold_predictions(p_base, threshold)
    pred_bs = threshold_predictions(p_bs, threshold)
    mc = mcnemar_test(y, pred_bs, pred_base)
    acc_base, acc_bs = float(np.mean(pred_base == y)), float(np.mean(pred_bs == y))
    rows.append(row("accuracy", "pooled out-of-fold", acc_base, acc_bs, acc_bs - acc_base,
                    _paired_accuracy_ci(mc["b"], mc["c"], y.size, alpha),
                    "Wald interval for paired proportions", TEST_MCNEMAR, mc["p_value"],
                    "secondary", f"McNemar {mc['method']}", min_attainable_p=mc["min_p"]))
    return rows


def fold_test_name(n_folds: int) -> str:
    """The fold rows' test: p and CI from one method (issue 22)."""
    return f"Nadeau–Bengio corrected t over {n_folds} folds"


def _decision(r: pd.Series, alpha: float, gate_open: bool) -> str:
    fam, p = r["family"], r["p_adjusted"]
    if fam == FAMILY_PER_REPEAT:
        return "descriptive (no test)"
    if fam == FAMILY_DESCRIPTIVE:
        return "descriptive: this test cannot reject here"
    if fam == "equivalence":
        return ("equivalent within the margin" if np.isfinite(p) and p < alpha
                else "equivalence NOT shown")
    if fam == "gatekept" and not gate_open:
        return "not tested: the primary family was not rejected on every TB set"
    if not np.isfinite(p):
        return "undefined"
    if p >= alpha:
        return "no difference shown" + (" (underpowered)" if r.get("underpowered") is True else "")
    if not (r["ci_low"] > 0 or r["ci_high"] < 0):
        return "no difference shown (CI includes 0)"
    return f"{r['arm']} better" if r["difference"] > 0 else f"{r['arm']} worse"


def adjust_families(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Adjusted p per family and a ``decision`` per row.

    primary: Holm across TB data sets. gatekept (bone_suppressed − control): serial gatekeeping
    after the primary family. equivalence (control − baseline): TOST p as is (a condition that
    must hold, intersection–union). secondary: Holm across its rows that can reject; the others
    become 'secondary (descriptive)', no adjusted p. Rows per repeat: no p.
    """
    out = table.copy()
    out["p_adjusted"] = np.nan
    out["adjustment"] = ""
    # secondary rows that cannot reject (no p, or a smallest attainable p >= alpha, e.g. exact
    # McNemar on <= 5 discordant pairs) leave the Holm family: they would only dilute it
    if "min_attainable_p" in out:
        min_p = pd.to_numeric(out["min_attainable_p"], errors="coerce")
        cannot = (out["family"] == "secondary") & (
            ~np.isfinite(pd.to_numeric(out["p_value"], errors="coerce")) | (min_p >= alpha))
        out.loc[cannot, "family"] = FAMILY_DESCRIPTIVE
        out.loc[cannot, "adjustment"] = (f"none: outside the Holm family (cannot reject at "
                                         f"{alpha:g})")
    for family, label in (("primary", ADJUST_PRIMARY), ("secondary", ADJUST_SECONDARY)):
        mask = out["family"] == family
        if mask.any():
            out.loc[mask, "p_adjusted"] = holm(out.loc[mask, "p_value"].to_numpy(dtype=float))
            out.loc[mask, "adjustment"] = label
    prim = out["family"] == "primary"
    gate = out["family"] == "gatekept"
    gate_open = bool(prim.any() and (out.loc[prim, "p_adjusted"] < alpha).all())
    if gate.any():
        out.loc[gate, "p_adjusted"] = serial_gatekeeping(
            out.loc[prim, "p_adjusted"].to_numpy(dtype=float),
            out.loc[gate, "p_value"].to_numpy(dtype=float))
        out.loc[gate, "adjustment"] = ADJUST_GATEKEPT
    eq = out["family"] == "equivalence"
    out.loc[eq, "p_adjusted"] = out.loc[eq, "p_value"]
    out.loc[eq, "adjustment"] = ADJUST_EQUIVALENCE
    out["decision"] = [_decision(r, alpha, gate_open) for _, r in out.iterrows()]
    return out


def _mean_over_repeats(predictions: pd.DataFrame) -> pd.DataFrame:
    """One prediction per image and variant: the probability averaged over the repeats."""
    keys = ["dataset", "variant", "image", "patient", "label", "fold"]
    counts = predictions.groupby(keys, sort=False)["repeat"].nunique()
    if counts.nunique() != 1:
        raise CxrbsError("predictions: every image needs the same number of fine-tuning repeats "
                         "in both variants; rerun the missing repeats")
    return predictions.groupby(keys, sort=False, as_index=False)["probability"].mean()


def _repeat_matrix(predictions: pd.DataFrame, dataset: str, variant: str,
                   images: pd.Index) -> np.ndarray:
    """(repeats, images) probabilities of one variant, columns in the order of ``images``."""
    part = predictions[(predictions["dataset"] == dataset) & (predictions["variant"] == variant)]
    if part.duplicated(["image", "repeat"]).any():
        raise CxrbsError(f"predictions for dataset {dataset!r}, variant {variant!r} list an image "
                         "more than once within a repeat: keep one out-of-fold prediction per "
                         "image and repeat")
    wide = part.pivot(index="repeat", columns="image", values="probability")
    return wide.sort_index().reindex(columns=images).to_numpy(dtype=float)


def _fold_test_train_ratio(fold: np.ndarray, inner_val_fraction: float) -> float:
    """Mean n_test / n_train over the folds, n_train net of the inner validation split."""
    sizes = pd.Series(fold).value_counts()
    n = int(sizes.sum())
    return float(np.mean([s / ((n - s) * (1.0 - inner_val_fraction)) for s in sizes]))


def compare_variants(
    predictions: pd.DataFrame, *, threshold: float = 0.5, alpha: float = 0.05,
    primary_endpoint: str = PRIMARY_ENDPOINT, equivalence_margin: float = EQUIVALENCE_MARGIN,
    claimed_effect: float = CLAIMED_EFFECT, inner_val_fraction: float | None = None,
    seed_variance: str = "full",
) -> pd.DataFrame:
    """Baseline vs bone-suppressed, per dataset: the primary row first, then secondary rows.

    ``predictions`` holds one out-of-fold prediction per image, variant and (optional column
    ``repeat``) fine-tuning repeat (columns image, patient, label, probability, fold, variant,
    dataset). Per data set:

    * the primary endpoint: AUC difference of the seed-averaged predictions, DeLong variance plus
      the between-seed variance of the per-repeat AUC difference (``delong_seed_test``), Holm
      across TB data sets; with one repeat it is DeLong's test alone (and says so);
    * per repeat (more than one): the AUC difference and the seed SD, family
      'per repeat (descriptive)', no p and no CI: only the averaged row decides;
    * for each of the seven metrics the mean per-fold difference with p and CI from the
      Nadeau–Bengio corrected t (test/train ratio from the fold sizes net of
      ``inner_val_fraction``; k−1 df); accuracy by McNemar on the pooled predictions;
    * with a ``control`` variant: control − baseline judged by TOST equivalence within
      ``equivalence_margin`` (family 'equivalence'), bone_suppressed − control as a gatekept
      hypothesis (family 'gatekept', serial gatekeeping after the primary family), both with
      the same seed-aware AUC test, and their fold/McNemar rows in the secondary family.

    ``difference`` = arm − reference; ``value_arm``/``value_reference`` hold the two sides.
    ``p_value`` is raw, ``p_adjusted`` adjusted within the row's ``family``; ``decision`` reads
    it (with the CI), ``detectable_difference`` is the smallest difference the row's standard
    error detects with 80% power and ``underpowered`` says whether that exceeds
    ``claimed_effect``.
    """
    if primary_endpoint != PRIMARY_ENDPOINT:
        raise CxrbsError(f"cls.primary_endpoint must be {PRIMARY_ENDPOINT!r} (the only one "
                         f"implemented); got {primary_endpoint!r}")
    _check_predictions(predictions)
    if "repeat" not in predictions:
        predictions = predictions.assign(repeat=0)
    n_repeats = int(predictions["repeat"].nunique())
    pooled = _mean_over_repeats(predictions)
    label = f"mean of {n_repeats} repeats" if n_repeats > 1 else "0"
    # which predictions each row scores (metrics.csv scores repeat 0 and says so; issue 22)
    used = f"seed-averaged ({n_repeats} repeats)" if n_repeats > 1 else "repeat 0"
    contrasts = [PRIMARY_CONTRAST]
    if "control" in set(predictions["variant"]):
        contrasts += list(CONTROL_CONTRASTS)
    rows: list[dict[str, Any]] = []
    per_repeat: list[dict[str, Any]] = []
    for dataset in sorted(pooled["dataset"].unique()):
        for arm, ref in contrasts:
            base, bs = _paired_frames(pooled, dataset, (ref, arm))
            ratio = (None if inner_val_fraction is None else
                     _fold_test_train_ratio(base["fold"].to_numpy(), inner_val_fraction))
            auc = delong_seed_test(base["label"].to_numpy(),
                                   _repeat_matrix(predictions, dataset, arm, base.index),
                                   _repeat_matrix(predictions, dataset, ref, base.index), alpha,
                                   seed_variance)
            found = _compare_dataset(base, bs, dataset, threshold, alpha, (arm, ref), auc=auc,
                                     margin=equivalence_margin, claimed_effect=claimed_effect,
                                     test_train_ratio=ratio)
            rows.extend({**r, "repeat": label, "predictions": used} for r in found)
            if n_repeats > 1:
                head = found[0]
                repeats = sorted(predictions["repeat"].unique())
                for rep, diff in zip(repeats, auc["per_repeat"], strict=True):
                    per_repeat.append({
                        **{k: head[k] for k in ("dataset", "contrast", "arm", "reference",
                                                "metric")},
                        "repeat": str(rep), "predictions": f"repeat {rep}",
                        "family": FAMILY_PER_REPEAT,
                        "estimate": "pooled out-of-fold, this repeat alone", "difference": diff,
                        "ci_low": np.nan, "ci_high": np.nan, "ci_method": "", "test": "",
                        "p_value": np.nan, "seed_sd": auc["seed_sd"],
                        "note": "this repeat alone: estimate only (its SD over repeats in "
                                "seed_sd); no p, the averaged row decides"})
    table = pd.DataFrame(rows + per_repeat).reindex(columns=COLUMNS)
    return adjust_families(table, alpha)[COLUMNS]
