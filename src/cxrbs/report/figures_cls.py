"""Classification figures: ROC curves, confusion matrices, metrics and the variant comparison.

Each ``plot_*`` function takes plain DataFrames, writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from cxrbs.report.style import (
    CLS_METRICS,
    MODEL_LABELS,
    VARIANT_COLOURS,
    VARIANT_LABELS,
    VARIANTS,
    figure,
    fmt_p,
    metric_label,
    ordered,
    save,
    yerr,
)


def _roc(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """ROC curve and AUC, or None where a class is absent (the curve is undefined there)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, _ = roc_curve(labels, probs)
    return fpr, tpr, float(roc_auc_score(labels, probs))


def plot_roc(preds: pd.DataFrame, out: str | Path, *, title: str = "") -> Path:
    """One panel per variant: thin per-fold ROC curves and the thick pooled curve of the deep
    model, the HOG floor's pooled curve dashed grey, each with its AUC in the legend."""
    variants = ordered(preds["variant"], VARIANTS)
    if not variants:
        raise ValueError("no predictions to draw ROC curves from")
    with figure(3.6 * len(variants), 3.7) as fig:
        axes = fig.subplots(1, len(variants), squeeze=False)[0]
        for ax, variant in zip(axes, variants, strict=True):
            _roc_panel(ax, preds[preds["variant"] == variant], VARIANT_COLOURS.get(variant, "C0"))
            ax.set_title(VARIANT_LABELS.get(variant, variant))
        fig.suptitle(title or "ROC curves (thin: single folds; thick: pooled out-of-fold)")
        return save(fig, out)


def _roc_panel(ax: Axes, preds: pd.DataFrame, colour: str) -> None:
    deep = preds[preds["model"] == "deep"]
    for i, (fold, group) in enumerate(deep.groupby(deep["fold"].astype(str), sort=True)):
        curve = _roc(group["label"].to_numpy(int), group["probability"].to_numpy(float))
        if curve is not None:
            ax.plot(curve[0], curve[1], color=colour, linewidth=0.8, alpha=0.45,
                    label="single folds" if i == 0 else None)
    for model, style in (("deep", {"color": colour, "linewidth": 2.4}),
                         ("hog_floor", {"color": "#555555", "linewidth": 1.8, "linestyle": "--"})):
        group = preds[preds["model"] == model]
        if group.empty:
            continue
        curve = _roc(group["label"].to_numpy(int), group["probability"].to_numpy(float))
        if curve is not None:
            legend = f"{MODEL_LABELS[model]}, pooled (AUC {curve[2]:.3f})"
            ax.plot(curve[0], curve[1], label=legend, **style)  # type: ignore[arg-type]
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel("1 − specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right")


def plot_confusion(
    preds: pd.DataFrame, threshold: float, out: str | Path, *, title: str = ""
) -> Path:
    """Pooled confusion matrices at ``threshold``: rows deep model / HOG floor, columns variants."""
    from sklearn.metrics import confusion_matrix

    variants = ordered(preds["variant"], VARIANTS)
    models = ordered(preds["model"], tuple(MODEL_LABELS))
    if not variants or not models:
        raise ValueError("no predictions to draw confusion matrices from")
    with figure(3.0 * len(variants) + 0.4, 2.8 * len(models) + 0.4) as fig:
        axes = fig.subplots(len(models), len(variants), squeeze=False)
        for r, model in enumerate(models):
            for c, variant in enumerate(variants):
                ax = axes[r, c]
                g = preds[(preds["model"] == model) & (preds["variant"] == variant)]
                predicted = (g["probability"].to_numpy(float) >= threshold).astype(int)
                cm = confusion_matrix(g["label"].to_numpy(int), predicted, labels=[0, 1])
                _confusion_panel(ax, cm)
                ax.set_title(f"{MODEL_LABELS.get(model, model)}, "
                             f"{VARIANT_LABELS.get(variant, variant)}")
        fig.suptitle(title or f"Pooled out-of-fold confusion matrices (threshold {threshold:g})")
        return save(fig, out)


def _confusion_panel(ax: Axes, cm: np.ndarray) -> None:
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    row_sums = cm.sum(axis=1, keepdims=True)
    for (i, j), n in np.ndenumerate(cm):
        share = n / row_sums[i, 0] if row_sums[i, 0] else math.nan
        ax.text(j, i, f"{n}\n({share:.0%} of row)" if np.isfinite(share) else f"{n}", ha="center",
                va="center", color="white" if n > cm.max() / 2 else "black", fontsize=9)
    ax.set_xticks([0, 1], ["normal", "TB"])
    ax.set_yticks([0, 1], ["normal", "TB"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


def plot_cls_metrics(metrics: pd.DataFrame, out: str | Path, *, dataset: str) -> Path:
    """Pooled metrics with 95% CIs per variant, deep model solid and HOG floor hatched."""
    rows = metrics[metrics["dataset"] == dataset]
    folds = rows["fold"].astype(str)
    if rows.empty:
        raise ValueError(f"no metrics for data set {dataset!r}")
    # pooled where the data set has folds; otherwise its only split (pretraining: "val")
    rows = rows[folds == ("pooled" if (folds == "pooled").any() else folds.iloc[0])]
    names = ordered(rows["metric"], CLS_METRICS)
    combos = [(v, m) for m in ordered(rows["model"], tuple(MODEL_LABELS))
              for v in ordered(rows["variant"], VARIANTS)]
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    with figure(2.6 * ncols + 0.3, 2.5 * nrows + 0.6) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, metric in zip(axes, names, strict=False):
            sel = rows[rows["metric"] == metric]
            for k, (variant, model) in enumerate(combos):
                r = sel[(sel["variant"] == variant) & (sel["model"] == model)]
                if r.empty:
                    continue
                v, lo, hi = (r[c].to_numpy(dtype=float) for c in ("value", "ci_low", "ci_high"))
                ax.bar([k], np.nan_to_num(v), yerr=yerr(v, lo, hi), capsize=3,
                       edgecolor="#333333", linewidth=0.6, **_bar_style(variant, model))
            ax.set_xticks([])
            ax.set_title(metric_label(metric))
            low = float(np.nanmin(sel["ci_low"].to_numpy(dtype=float), initial=0.0))
            ax.set_ylim(min(0.0, low - 0.05), 1.05)
            ax.grid(axis="y", alpha=0.3)
        for ax in axes[len(names):]:
            ax.set_axis_off()
        handles = [Patch(edgecolor="#333333", **_bar_style(v, m),
                         label=f"{VARIANT_LABELS.get(v, v)}, {MODEL_LABELS.get(m, m)}")
                   for v, m in combos]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 2),
                   frameon=False)
        fig.suptitle(f"{dataset}: classification metrics (pooled, 95% CI)")
        return save(fig, out)


def _bar_style(variant: str, model: str) -> dict[str, Any]:
    """Colour by variant; the HOG floor pale and hatched so it never passes for the deep model."""
    deep = model == "deep"
    return {"facecolor": VARIANT_COLOURS.get(variant, "C0"), "alpha": 1.0 if deep else 0.45,
            "hatch": None if deep else "//"}


def plot_metric_comparison(comparison: pd.DataFrame, out: str | Path) -> Path:
    """Arm minus reference per metric and test, with 95% CIs and the adjusted p beside.

    One panel per data set and contrast, each with its own axis label (``contrast``: e.g.
    "control − baseline"); rows name their family and, for the rows per fine-tuning repeat
    (descriptive, no p), the repeat.
    """
    if comparison.empty:
        raise ValueError("the comparison table is empty")
    comp = comparison.copy()
    if "contrast" not in comp:
        comp["contrast"] = "bone_suppressed − baseline"
    panels = list(dict.fromkeys(zip(comp["dataset"].astype(str), comp["contrast"].astype(str))))
    heights = [max(int(((comp["dataset"].astype(str) == d) & (comp["contrast"] == c)).sum()), 1)
               for d, c in panels]
    with figure(8.0, 0.33 * sum(heights) + 1.2 * len(panels) + 0.6) as fig:
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (dataset, contrast) in zip(axes, panels, strict=True):
            rows = comp[(comp["dataset"].astype(str) == dataset)
                        & (comp["contrast"] == contrast)].reset_index(drop=True)
            _comparison_panel(ax, rows)
            ax.set_title(f"{dataset}: {contrast}", loc="left")
            ax.set_xlabel(f"difference, {contrast} (95% CI)", fontsize=8)
        fig.suptitle("Paired comparisons (red: adjusted p < 0.05; grey: descriptive, no test)")
        return save(fig, out)


def _row_label(r: pd.Series) -> str:
    fam = str(r.get("family", ""))
    rep = str(r.get("repeat", ""))
    if fam.startswith("per repeat"):
        return f"{r['metric']} — repeat {rep} (descriptive)"
    return f"{r['metric']} — {r['test']} [{fam}]" if fam else f"{r['metric']} — {r['test']}"


def _comparison_panel(ax: Axes, rows: pd.DataFrame) -> None:
    y = np.arange(len(rows))[::-1]
    diff = rows["difference"].to_numpy(dtype=float)
    lo = np.where(np.isfinite(rows["ci_low"].to_numpy(dtype=float)),
                  rows["ci_low"].to_numpy(dtype=float), diff)
    hi = np.where(np.isfinite(rows["ci_high"].to_numpy(dtype=float)),
                  rows["ci_high"].to_numpy(dtype=float), diff)
    p = rows.get("p_adjusted", rows["p_value"]).to_numpy(dtype=float)  # adjusted (issue 12)
    colours = ["#c00000" if pv < 0.05 else ("#222222" if np.isfinite(pv) else "#999999")
               for pv in p]
    for yi, d, l_, h, col in zip(y, diff, lo, hi, colours, strict=True):
        ax.errorbar([d], [yi], xerr=yerr(np.array([d]), np.array([l_]), np.array([h])), fmt="o",
                    color=col, capsize=3, markersize=4)
    ax.axvline(0.0, color="#888888", linestyle="--", linewidth=1)
    labels = [_row_label(r) for _, r in rows.iterrows()]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for yi, pv, col in zip(y, p, colours, strict=True):
        ax.annotate(fmt_p(pv), (1.01, yi),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=col)
    ax.grid(axis="x", alpha=0.3)
