"""Figures for every stage (bone suppression, classification, relevance maps, feature space).

Each ``plot_*`` function takes plain DataFrames/arrays, writes one PNG atomically and returns its
path, so it can be tested without a workflow run. ``make_all_figures`` walks the results tree,
draws whatever is there and says in ``notes`` why a part is missing instead of failing: the report
must still be built when, e.g., no expert boxes exist.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas, never pyplot), so nothing
needs a screen and no global figure state leaks between calls. PNGs carry no timestamp.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from cxrbs.core.atomic import atomic_path, write_csv
from cxrbs.explain.crm import Box, overlay

log = logging.getLogger(__name__)

DPI = 110
BS_METRICS = ("mae", "psnr", "ssim", "ms_ssim", "bsr", "bsr_energy")
CLS_METRICS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "mcc")
VARIANTS = ("baseline", "bone_suppressed")
METRIC_LABELS = {
    "mae": "MAE (lower is better)",
    "psnr": "PSNR, dB (higher is better)",
    "ssim": "SSIM (higher is better)",
    "ms_ssim": "MS-SSIM (higher is better)",
    "bsr": "BSR (higher is better)",
    "bsr_energy": "bone energy removed\n(higher is better; identity = 0)",
    "accuracy": "accuracy", "auc": "AUC", "sensitivity": "sensitivity",
    "specificity": "specificity", "precision": "precision", "f1": "F1 score", "mcc": "MCC",
}  # fmt: skip
VARIANT_LABELS = {"baseline": "baseline (original)", "bone_suppressed": "bone-suppressed"}
VARIANT_COLOURS = {"baseline": "#1f77b4", "bone_suppressed": "#d62728"}
MODEL_LABELS = {"deep": "deep model", "hog_floor": "HOG + LR floor"}
IDENTITY = "identity"
IDENTITY_COLOUR = "#b0b0b0"
BOX_COLOUR = "#39ff14"
FEATURE_SPACE_COLUMNS = ["dataset", "variant", "fold", "n", "silhouette", "davies_bouldin"]
CRM_BOX_COLUMNS = ["dataset", "variant", "fold", "image", "method", "n_boxes", "mass_inside"]
_STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False,
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# plumbing
# ---------------------------------------------------------------------------------------------
@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    """A pyplot-free figure under the project's style (readable fonts, no top/right spines)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _save(fig: Figure, out: str | Path) -> Path:
    """Write atomically; metadata without the matplotlib version keeps reruns byte-identical."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return out


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _as_stack(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {a.shape}")
    return a


def _show_gray(ax: Axes, img: np.ndarray) -> None:
    ax.imshow(np.clip(img, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Known names in the preferred order first, then any others sorted."""
    present = list(dict.fromkeys(str(v) for v in values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _yerr(means: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Asymmetric error bars; a missing CI draws no bar instead of a NaN warning."""
    below = np.nan_to_num(means - lows, nan=0.0)
    above = np.nan_to_num(highs - means, nan=0.0)
    return np.clip(np.vstack([below, above]), 0.0, None)


# ---------------------------------------------------------------------------------------------
# bone suppression
# ---------------------------------------------------------------------------------------------
def example_indices(
    metric_values: Sequence[float], *, higher_is_better: bool = True
) -> list[tuple[str, int]]:
    """(kind, index) of the best, median and worst image; duplicates dropped for tiny sets."""
    vals = np.asarray(metric_values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(vals))
    if finite.size == 0:
        return []
    order = finite[np.argsort(vals[finite], kind="stable")]
    if higher_is_better:
        order = order[::-1]
    picks = [("best", int(order[0])), ("median", int(order[len(order) // 2])),
             ("worst", int(order[-1]))]
    seen: set[int] = set()
    out = []
    for kind, idx in picks:
        if idx not in seen:
            seen.add(idx)
            out.append((kind, idx))
    return out


def plot_bs_examples(pairs_source: Any, preds: Any, targets: Any, names: Sequence[str],
                     metric_values: Sequence[float], out: str | Path, *, metric: str = "PSNR",
                     model_name: str = "model") -> Path:
    """Best, median and worst test image by ``metric``: input, prediction, target, error, bones.

    The |input - target| column shows the bone layer the model should remove; the error column
    beside it, on the same colour scale, shows how much of it is left.
    """
    src = _as_stack(pairs_source, "pairs_source")
    pred = _as_stack(preds, "preds")
    tgt = _as_stack(targets, "targets")
    same = src.shape == pred.shape == tgt.shape
    if not same or len(names) != len(src) or len(metric_values) != len(src):
        raise ValueError(
            "pairs_source, preds, targets, names and metric_values must have one entry per image"
        )
    rows = example_indices(metric_values, higher_is_better=metric.lower() != "mae")
    if not rows:
        raise ValueError("no finite metric value to rank the test images by")
    cols = ["input", f"prediction ({model_name})", "target (soft tissue)",
            "|prediction − target|", "|input − target| (bone layer)"]
    with _figure(2.2 * len(cols), 2.35 * len(rows) + 0.3) as fig:
        axes = fig.subplots(len(rows), len(cols), squeeze=False)
        for r, (kind, i) in enumerate(rows):
            err, bone = np.abs(pred[i] - tgt[i]), np.abs(src[i] - tgt[i])
            both = np.concatenate([err.ravel(), bone.ravel()])
            vmax = max(float(np.percentile(both, 99.5)), 1e-6)
            for c, img in enumerate((src[i], pred[i], tgt[i])):
                _show_gray(axes[r, c], img)
            for c, img in ((3, err), (4, bone)):
                im = axes[r, c].imshow(img, cmap="magma", vmin=0.0, vmax=vmax,
                                       interpolation="nearest")
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
            fig.colorbar(im, ax=axes[r, 3:], shrink=0.8, label="absolute difference")
            axes[r, 0].set_ylabel(f"{kind}: {names[i]}\n{metric} {float(metric_values[i]):.4g}")
            for c, title in enumerate(cols):
                if r == 0:
                    axes[r, c].set_title(title)
        fig.suptitle(f"Bone suppression by {model_name}: "
                     f"best, median and worst test image by {metric}")
        return _save(fig, out)


def plot_bs_metrics(summary: pd.DataFrame, out: str | Path) -> Path:
    """Mean with 95% CI per architecture and metric; the identity baseline hatched grey + a line.

    A model's bar is only meaningful next to the identity line (prediction = input): on real
    pairs the identity already scores high, because bones change few pixels.
    """
    need = {"arch", "test_set", "metric", "mean", "ci_low", "ci_high"}
    if not need <= set(summary.columns):
        raise ValueError(f"summary needs columns {sorted(need)}, has {list(summary.columns)}")
    metrics = _ordered(summary["metric"], BS_METRICS)
    tests = sorted(summary["test_set"].astype(str).unique())
    archs = sorted(a for a in summary["arch"].astype(str).unique() if a != IDENTITY)
    archs += [IDENTITY] if (summary["arch"] == IDENTITY).any() else []
    colours = {a: f"C{i % 10}" for i, a in enumerate(a for a in archs if a != IDENTITY)}
    with _figure(2.6 * len(metrics) + 0.4, 3.0 * len(tests) + 0.5) as fig:
        axes = fig.subplots(len(tests), len(metrics), squeeze=False)
        for r, test in enumerate(tests):
            for c, metric in enumerate(metrics):
                _bs_metric_panel(axes[r, c], summary, test, metric, archs, colours)
                axes[r, c].set_title(_label(metric) + (f"\n{test}" if len(tests) > 1 else ""))
        handles = [Patch(facecolor=IDENTITY_COLOUR, hatch="//", edgecolor="#555555",
                         label="identity baseline (prediction = input)")]
        fig.legend(handles=handles, loc="outside lower center", frameon=False)
        fig.suptitle("Bone-suppression quality on the paired test set"
                     + ("s" if len(tests) > 1 else f" {tests[0]}") + " (mean, 95% CI)")
        return _save(fig, out)


def _bs_metric_panel(ax: Axes, summary: pd.DataFrame, test: str, metric: str, archs: list[str],
                     colours: dict[str, str]) -> None:
    rows = summary[(summary["test_set"].astype(str) == test) & (summary["metric"] == metric)]
    rows = rows.set_index(rows["arch"].astype(str)).reindex(archs)
    means = rows["mean"].to_numpy(dtype=float)
    lows, highs = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    x = np.arange(len(archs))
    bars = ax.bar(x, np.nan_to_num(means), yerr=_yerr(means, lows, highs), capsize=3,
                  color=[IDENTITY_COLOUR if a == IDENTITY else colours[a] for a in archs],
                  edgecolor="#333333", linewidth=0.6)
    for bar, arch in zip(bars, archs, strict=True):
        if arch == IDENTITY:
            bar.set_hatch("//")
    if IDENTITY in archs and np.isfinite(means[archs.index(IDENTITY)]):
        ax.axhline(means[archs.index(IDENTITY)], color="#555555", linestyle="--", linewidth=1)
    finite = np.concatenate([means, lows, highs])
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0:
        span = max(finite.max() - finite.min(), 1e-3 * abs(finite.max()), 1e-9)
        bottom = max(0.0, finite.min() - 0.6 * span)
        ax.set_ylim(bottom, finite.max() + 0.35 * span)
        if bottom > 0:
            ax.set_ylabel("axis does not start at 0", fontsize=7, color="#666666")
    for xi, m, h in zip(x, means, highs, strict=True):
        if np.isfinite(m):  # above the error bar, so the value never sits on it
            top = max(m, h) if np.isfinite(h) else m
            ax.annotate(f"{m:.4g}", (xi, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, archs, rotation=30, ha="right")


def plot_training_curves(histories: Mapping[str, pd.DataFrame], out: str | Path, *,
                         title: str = "Training curves") -> Path:
    """Training and validation loss per epoch per model (and validation AUC where logged)."""
    if not histories:
        raise ValueError("no training history to plot")
    has_auc = any("val_auc" in h and h["val_auc"].notna().any() for h in histories.values())
    panels = [("loss", "training loss"), ("val_loss", "validation loss")]
    panels += [("val_auc", "validation AUC")] if has_auc else []
    losses = pd.concat([h[c] for h in histories.values() for c in ("loss", "val_loss") if c in h])
    losses = losses[np.isfinite(losses.to_numpy(dtype=float))]
    log_scale = bool(len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20)
    with _figure(3.4 * len(panels), 3.0) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (col, label) in zip(axes, panels, strict=True):
            for i, (name, hist) in enumerate(histories.items()):
                if col in hist and hist[col].notna().any():
                    ax.plot(hist["epoch"], hist[col], marker="o", markersize=3,
                            color=f"C{i % 10}", label=name)
            ax.set_title(label)
            ax.set_xlabel("epoch")
            if col != "val_auc" and log_scale:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(title)
        return _save(fig, out)


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
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
    variants = _ordered(preds["variant"], VARIANTS)
    if not variants:
        raise ValueError("no predictions to draw ROC curves from")
    with _figure(3.6 * len(variants), 3.7) as fig:
        axes = fig.subplots(1, len(variants), squeeze=False)[0]
        for ax, variant in zip(axes, variants, strict=True):
            _roc_panel(ax, preds[preds["variant"] == variant], VARIANT_COLOURS.get(variant, "C0"))
            ax.set_title(VARIANT_LABELS.get(variant, variant))
        fig.suptitle(title or "ROC curves (thin: single folds; thick: pooled out-of-fold)")
        return _save(fig, out)


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
            label = f"{MODEL_LABELS[model]}, pooled (AUC {curve[2]:.3f})"
            ax.plot(curve[0], curve[1], label=label, **style)
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

    variants = _ordered(preds["variant"], VARIANTS)
    models = _ordered(preds["model"], tuple(MODEL_LABELS))
    if not variants or not models:
        raise ValueError("no predictions to draw confusion matrices from")
    with _figure(3.0 * len(variants) + 0.4, 2.8 * len(models) + 0.4) as fig:
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
        return _save(fig, out)


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
    names = _ordered(rows["metric"], CLS_METRICS)
    combos = [(v, m) for m in _ordered(rows["model"], tuple(MODEL_LABELS))
              for v in _ordered(rows["variant"], VARIANTS)]
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    with _figure(2.6 * ncols + 0.3, 2.5 * nrows + 0.6) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, metric in zip(axes, names, strict=False):
            sel = rows[rows["metric"] == metric]
            for k, (variant, model) in enumerate(combos):
                r = sel[(sel["variant"] == variant) & (sel["model"] == model)]
                if r.empty:
                    continue
                v, lo, hi = (r[c].to_numpy(dtype=float) for c in ("value", "ci_low", "ci_high"))
                ax.bar([k], np.nan_to_num(v), yerr=_yerr(v, lo, hi), capsize=3,
                       edgecolor="#333333", linewidth=0.6, **_bar_style(variant, model))
            ax.set_xticks([])
            ax.set_title(_label(metric))
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
        return _save(fig, out)


def _bar_style(variant: str, model: str) -> dict[str, Any]:
    """Colour by variant; the HOG floor pale and hatched so it never passes for the deep model."""
    deep = model == "deep"
    return {"facecolor": VARIANT_COLOURS.get(variant, "C0"), "alpha": 1.0 if deep else 0.45,
            "hatch": None if deep else "//"}


def plot_metric_comparison(comparison: pd.DataFrame, out: str | Path) -> Path:
    """Bone-suppressed minus baseline per metric and test, with 95% CIs and the p-value beside."""
    datasets = sorted(comparison["dataset"].astype(str).unique())
    if not datasets:
        raise ValueError("the comparison table is empty")
    heights = [max(len(comparison[comparison["dataset"] == d]), 1) for d in datasets]
    with _figure(8.0, 0.33 * sum(heights) + 1.0 * len(datasets) + 0.6) as fig:
        axes = fig.subplots(len(datasets), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, dataset in zip(axes, datasets, strict=True):
            rows = comparison[comparison["dataset"] == dataset].reset_index(drop=True)
            _comparison_panel(ax, rows)
            ax.set_title(dataset, loc="left")
        axes[-1].set_xlabel("difference, bone-suppressed − baseline (95% CI)")
        fig.suptitle("Paired comparison of the two variants (red: Holm-adjusted p < 0.05)")
        return _save(fig, out)


def _comparison_panel(ax: Axes, rows: pd.DataFrame) -> None:
    y = np.arange(len(rows))[::-1]
    diff = rows["difference"].to_numpy(dtype=float)
    lo, hi = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    p = rows.get("p_adjusted", rows["p_value"]).to_numpy(dtype=float)  # Holm-adjusted (issue 12)
    colours = ["#c00000" if pv < 0.05 else "#222222" for pv in p]
    for yi, d, l_, h, col in zip(y, diff, lo, hi, colours, strict=True):
        ax.errorbar([d], [yi], xerr=_yerr(np.array([d]), np.array([l_]), np.array([h])), fmt="o",
                    color=col, capsize=3, markersize=4)
    ax.axvline(0.0, color="#888888", linestyle="--", linewidth=1)
    labels = [f"{m} — {t}" for m, t in zip(rows["metric"], rows["test"], strict=True)]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    for yi, pv, col in zip(y, p, colours, strict=True):
        ax.annotate("p = n/a" if not np.isfinite(pv) else f"p = {pv:.3g}", (1.01, yi),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=col)
    ax.grid(axis="x", alpha=0.3)


# ---------------------------------------------------------------------------------------------
# relevance maps and feature space
# ---------------------------------------------------------------------------------------------
def plot_crm_grid(images_orig: Any, images_bs: Any, crm_orig: Any, crm_bs: Any,
                  titles: Sequence[str], out: str | Path, *, gradcam_orig: Any = None,
                  gradcam_bs: Any = None, boxes: Sequence[Sequence[Box]] | None = None) -> Path:
    """One row per case: original and bone-suppressed image with their CRM (and Grad-CAM) overlays.

    ``boxes`` (one list per case, pixel coordinates of the shown images) are drawn on every panel,
    so the reader can see whether the relevance falls on the expert's finding.
    """
    orig, bs = _as_stack(images_orig, "images_orig"), _as_stack(images_bs, "images_bs")
    maps = {"orig": _as_stack(crm_orig, "crm_orig"), "bs": _as_stack(crm_bs, "crm_bs")}
    cams = None
    if gradcam_orig is not None and gradcam_bs is not None:
        cams = {"orig": _as_stack(gradcam_orig, "gradcam_orig"),
                "bs": _as_stack(gradcam_bs, "gradcam_bs")}
    n = len(orig)
    if n == 0 or not (len(bs) == len(titles) == n == len(maps["orig"]) == len(maps["bs"])):
        raise ValueError(
            "need one original and bone-suppressed image, CRM pair and title per case (>= 1)"
        )
    panels: list[tuple[str, str, str | None]] = []
    for key, name in (("orig", "original"), ("bs", "bone-suppressed")):
        panels += [(key, name, None), (key, f"{name} + CRM", "crm")]
        panels += [(key, f"{name} + Grad-CAM", "cam")] if cams is not None else []
    with _figure(2.25 * len(panels), 2.45 * n + 0.4) as fig:
        axes = fig.subplots(n, len(panels), squeeze=False)
        for i in range(n):
            for c, (key, name, kind) in enumerate(panels):
                ax = axes[i, c]
                img = orig[i] if key == "orig" else bs[i]
                if kind is None:
                    _show_gray(ax, img)
                else:
                    heat = maps[key][i] if kind == "crm" else cams[key][i]  # type: ignore[index]
                    ax.imshow(overlay(img, heat), interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                for x, y, w, h in (boxes[i] if boxes is not None else []):
                    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False,
                                           edgecolor=BOX_COLOUR, linewidth=1.4))
                if i == 0:
                    ax.set_title(name)
            axes[i, 0].set_ylabel(_wrap(titles[i], 30), fontsize=7.5)
        fig.suptitle("Class-selective relevance maps (CRM) and Grad-CAM of TB cases"
                     + ("; green boxes: expert annotations" if boxes is not None else ""))
        return _save(fig, out)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def plot_tsne(emb_base: Any, emb_bs: Any, labels: Any, scores: Mapping[str, Mapping[str, float]],
              out: str | Path, *, title: str = "") -> Path:
    """t-SNE of the pooled features, baseline and bone-suppressed model side by side; silhouette
    (higher = more separated) and Davies-Bouldin (lower = more compact) in the panel titles."""
    labels = np.asarray(labels).astype(int)
    embs = {"baseline": np.asarray(emb_base, dtype=float),
            "bone_suppressed": np.asarray(emb_bs, dtype=float)}
    for name, emb in embs.items():
        if emb.ndim != 2 or emb.shape[1] != 2 or len(emb) != len(labels):
            raise ValueError(
                f"{name} embedding must be (N, 2) with one label per row, got {emb.shape}"
            )
    with _figure(7.6, 3.9) as fig:
        axes = fig.subplots(1, 2, squeeze=False)[0]
        for ax, (variant, emb) in zip(axes, embs.items(), strict=True):
            classes = ((0, "normal", "o", "#1f77b4"), (1, "TB", "^", "#d62728"))
            for label, name, marker, colour in classes:
                sel = labels == label
                ax.scatter(emb[sel, 0], emb[sel, 1], s=22, marker=marker, color=colour, alpha=0.8,
                           edgecolors="none", label=f"{name} (n={int(sel.sum())})")
            s = scores.get(variant, {})
            # the scores are of the full features, not of this 2-D picture
            ax.set_title(f"{VARIANT_LABELS[variant]}\nfeatures: silhouette "
                         f"{_fmt(s.get('silhouette'))}, Davies-Bouldin "
                         f"{_fmt(s.get('davies_bouldin'))}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.legend(loc="best")
        fig.suptitle(title or "t-SNE of pooled deep features of held-out images")
        return _save(fig, out)


def _fmt(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.3f}" if np.isfinite(v) else "n/a"


# ---------------------------------------------------------------------------------------------
# the whole results tree
# ---------------------------------------------------------------------------------------------
SECTIONS = ("bone_suppression", "classification", "statistics", "relevance_maps", "feature_space")


@dataclass
class _Collector:
    out_dir: Path
    figures: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    notes: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SECTIONS})

    def add(self, section: str, path: Path) -> None:
        self.figures[section].append(Path(path))
        log.info("wrote %s", path)

    def note(self, section: str, text: str) -> None:
        self.notes[section].append(text)
        log.info("%s: %s", section, text)

    def path(self, name: str) -> Path:
        return self.out_dir / f"{name}.png"


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def _datasets(config: Mapping[str, Any], role: str) -> list[str]:
    specs = (config.get("datasets") or {}).items()
    return sorted(n for n, s in specs if (s or {}).get("role") == role)


def make_all_figures(results_dir: str | Path, config: Mapping[str, Any], out_dir: str | Path, *,
                     notes: dict[str, list[str]] | None = None) -> dict[str, list[Path]]:
    """Every figure the results tree allows, by report section; also writes
    ``<results>/cls/feature_space.csv`` and, with ``report.boxes_csv`` set, ``cls/crm_boxes.csv``.

    Parts whose inputs are absent are skipped with a one-line reason added to ``notes``.
    """
    results = Path(results_dir)
    col = _Collector(Path(out_dir))
    _bone_suppression_figures(results, config, col)
    _classification_figures(results, config, col)
    _model_figures(results, config, col)
    if notes is not None:
        for section, lines in col.notes.items():
            notes.setdefault(section, []).extend(lines)
    return col.figures


def _bone_suppression_figures(results: Path, config: Mapping[str, Any], col: _Collector) -> None:
    sec = "bone_suppression"
    summary = _read_csv(results / "bs" / "eval" / "summary.csv")
    if summary is None or summary.empty:
        col.note(sec, "no bone-suppression evaluation (results/bs/eval/summary.csv) yet")
    else:
        col.add(sec, plot_bs_metrics(summary, col.path("bs_metrics")))
    found = sorted((results / "bs" / "models").glob("*/history.csv"))
    histories = {p.parent.name: pd.read_csv(p) for p in found}
    if histories:
        col.add(sec, plot_training_curves(histories, col.path("bs_training_curves"),
                                          title="Bone-suppression training (MAE + MS-SSIM loss)"))
    else:
        col.note(sec, "no bone-suppression training history found")
    _bs_example_figures(results, config, col)


def _bs_example_figures(results: Path, config: Mapping[str, Any], col: _Collector) -> None:
    import json

    sec = "bone_suppression"
    best_path = results / "bs" / "best.json"
    if not best_path.is_file():
        col.note(sec, "no selected model (results/bs/best.json): example images left out")
        return
    arch = str(json.loads(best_path.read_text())["arch"])
    checkpoint = results / "bs" / "models" / arch / "best.pt"
    tests = _datasets(config, "bs_test")
    tests = tests or sorted(p.stem for p in (results / "bs" / "eval" / arch).glob("*.csv"))
    evals = [results / "bs" / "eval" / arch / f"{t}.csv" for t in tests]
    evals = [p for p in evals if p.is_file()]
    if not checkpoint.is_file() or not evals:
        col.note(sec, f"model {arch}: checkpoint or per-image evaluation missing; "
                      "example images left out")
        return
    from cxrbs.data.stacks import load_stack, read_manifest
    from cxrbs.data.preprocess import from_uint16
    from cxrbs.bs.train import load_bs_model, predict_images

    model, _ = load_bs_model(checkpoint)
    for eval_csv in evals:
        test = eval_csv.stem
        stack_path = results / "data" / test / "images.npy"
        manifest_path = results / "data" / test / "manifest.csv"
        if not (stack_path.is_file() and manifest_path.is_file()):
            col.note(sec, f"test set {test}: prepared stack missing; example images left out")
            continue
        per_image = pd.read_csv(eval_csv, dtype={"name": str})
        index = {n: i for i, n in enumerate(read_manifest(manifest_path)["pair_id"].astype(str))}
        per_image = per_image[per_image["name"].isin(list(index))].reset_index(drop=True)
        picks = example_indices(per_image["psnr"].to_numpy(float))
        if not picks:
            col.note(sec, f"test set {test}: no finite PSNR to rank examples by")
            continue
        rows = [index[per_image["name"][i]] for _, i in picks]
        pairs = from_uint16(np.asarray(load_stack(stack_path)[rows]))
        pred = predict_images(model, pairs[:, 0], batch_size=4)
        names = [str(per_image["name"][i]) for _, i in picks]
        psnr = [float(per_image["psnr"][i]) for _, i in picks]
        # Picks are already ordered best, median, worst: keep that order in the figure.
        col.add(sec, plot_bs_examples(pairs[:, 0], pred, pairs[:, 1], names, psnr,
                                      col.path(f"bs_examples_{test}"), metric="PSNR",
                                      model_name=arch))


def _classification_figures(results: Path, config: Mapping[str, Any], col: _Collector) -> None:
    sec = "classification"
    cls_cfg = config.get("cls") or {}
    threshold = float(cls_cfg.get("threshold", 0.5))
    history = _read_csv(results / "cls" / "pretrain" / "history.csv")
    if history is not None and not history.empty:
        col.add(sec, plot_training_curves({"pretrain": history}, col.path("cls_pretrain_curves"),
                                          title="Classifier pretraining (normal vs abnormal CXR)"))
    for tb in _datasets(config, "tb"):
        files = sorted((results / "cls" / tb).glob("*/fold*/predictions.csv"))
        if not files:
            col.note(sec, f"{tb}: no fold predictions yet")
            continue
        preds = pd.concat([pd.read_csv(p, dtype={"patient": str, "image": str}) for p in files],
                          ignore_index=True)
        col.add(sec, plot_roc(preds, col.path(f"cls_roc_{tb}"),
                              title=f"{tb}: ROC curves (thin: folds; thick: pooled)"))
        col.add(sec, plot_confusion(
            preds, threshold, col.path(f"cls_confusion_{tb}"),
            title=f"{tb}: pooled confusion matrices (threshold {threshold:g})"))
    metrics = _read_csv(results / "cls" / "metrics.csv", dtype={"fold": str})
    if metrics is None or metrics.empty:
        col.note(sec, "no classification metrics (results/cls/metrics.csv) yet")
    else:
        for dataset in sorted(metrics["dataset"].astype(str).unique()):
            out = col.path(f"cls_metrics_{dataset}")
            col.add(sec, plot_cls_metrics(metrics, out, dataset=dataset))
    comparison = _read_csv(results / "cls" / "comparison.csv")
    if comparison is None or comparison.empty:
        col.note("statistics", "no variant comparison (results/cls/comparison.csv) yet")
    else:
        col.add("statistics", plot_metric_comparison(comparison, col.path("cls_comparison")))


# ---------------------------------------------------------------------------------------------
# relevance maps, box localisation and feature space, from the fold models
# ---------------------------------------------------------------------------------------------
def select_crm_cases(labels: Sequence[int], prob: Sequence[float], threshold: float,
                     n: int) -> list[tuple[int, bool]]:
    """(index, correct) of up to ``n`` TB cases: half the most confidently right, half the most
    clearly missed; a short side is filled from the other, so the figure always has ``n`` rows
    where the set allows."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(prob, dtype=float)
    tb = np.flatnonzero((y == 1) & np.isfinite(p))
    right = [int(i) for i in tb[np.argsort(-p[tb], kind="stable")] if p[i] >= threshold]
    wrong = [int(i) for i in tb[np.argsort(p[tb], kind="stable")] if p[i] < threshold]
    n_right = min(len(right), max(math.ceil(n / 2), n - len(wrong)))
    n_wrong = min(len(wrong), n - n_right)
    return [(i, True) for i in right[:n_right]] + [(i, False) for i in wrong[:n_wrong]]


@dataclass
class _FoldData:
    """One TB set's held-out images of one fold, both variants, with their models."""

    dataset: str
    fold: int
    first: bool
    names: list[str]
    labels: np.ndarray
    image_paths: list[str]
    images: dict[str, np.ndarray]
    models: dict[str, Any]


def _heatmaps(model: Any, img: np.ndarray, crm_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """CRM and Grad-CAM (towards the TB class) of one (H, W) image in [0, 1]."""
    import torch

    from cxrbs.explain.crm import class_selective_relevance_map, grad_cam

    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    crm = class_selective_relevance_map(model, x, threshold=crm_threshold)
    target = 1 if int(getattr(model.fc, "out_features", 2)) > 1 else 0
    return crm, grad_cam(model, x, target)


def _model_figures(results: Path, config: Mapping[str, Any], col: _Collector) -> None:
    """CRM grids, box localisation, cluster scores and t-SNE; writes the two tables."""
    report_cfg = config.get("report") or {}
    boxes_csv = report_cfg.get("boxes_csv")
    fs_rows: list[dict[str, Any]] = []
    box_rows: list[dict[str, Any]] = []
    boxes = _read_boxes(Path(boxes_csv), col) if boxes_csv else None
    if not boxes_csv:
        col.note("relevance_maps",
                 "no expert boxes configured (report.boxes_csv): localisation not scored")
    for tb in _datasets(config, "tb"):
        for fold in _fold_data(results, config, tb, col):
            fs_rows += _feature_space_rows(fold, config, col)
            if boxes:
                box_rows += _box_rows(fold, boxes, float(report_cfg.get("crm_threshold", 0.1)), col)
            if fold.first:
                _crm_examples(results, config, fold, boxes or {}, col)
    write_csv(results / "cls" / "feature_space.csv",
              pd.DataFrame(fs_rows, columns=FEATURE_SPACE_COLUMNS))
    if boxes_csv:
        write_csv(results / "cls" / "crm_boxes.csv",
                  pd.DataFrame(box_rows, columns=CRM_BOX_COLUMNS))


def _read_boxes(path: Path, col: _Collector) -> dict[str, list[Box]]:
    from cxrbs.explain.crm import read_boxes_csv

    if not path.is_file():
        col.note("relevance_maps",
                 f"box file {path} (report.boxes_csv) does not exist: boxes left out")
        return {}
    return {Path(k).stem: v for k, v in read_boxes_csv(path).items()}


def _fold_data(
    results: Path, config: Mapping[str, Any], tb: str, col: _Collector
) -> Iterator[_FoldData]:
    """Yield each fold whose two variant models and image stacks exist; note what is missing."""
    from cxrbs.data.stacks import load_stack
    from cxrbs.data.preprocess import resize_images

    variants = list((config.get("cls") or {}).get("variants", VARIANTS))
    folds_csv = results / "data" / tb / "folds.csv"
    stacks = {"baseline": results / "data" / tb / "images.npy",
              "bone_suppressed": results / "suppressed" / tb / "images.npy"}
    missing = [str(p) for p in (folds_csv, *stacks.values()) if not p.is_file()]
    if set(VARIANTS) - set(variants) or missing:
        why = (f"missing {', '.join(missing)}" if missing
               else "both variants are needed (cls.variants)")
        for sec in ("relevance_maps", "feature_space"):
            col.note(sec, f"{tb}: left out, {why}")
        return
    try:
        from cxrbs.cls.train import load_classifier
        from cxrbs.core.device import select_device
    except ImportError as exc:  # the classification module is optional for figure-only installs
        for sec in ("relevance_maps", "feature_space"):
            col.note(sec, f"{tb}: left out, cxrbs.cls.train cannot be imported ({exc})")
        return
    folds = pd.read_csv(folds_csv, dtype={"patient_id": str})
    loaded = {v: load_stack(p) for v, p in stacks.items()}
    device = select_device("auto")  # a GPU where there is one: VGG-16 features of every fold
    fold_ids = sorted(int(f) for f in folds["fold"].unique())
    for k in fold_ids:
        paths = {v: results / "cls" / tb / v / f"fold{k}" / "model.pt" for v in VARIANTS}
        if not all(p.is_file() for p in paths.values()):
            for sec in ("relevance_maps", "feature_space"):
                col.note(sec, f"{tb} fold {k}: a variant's model.pt is missing, fold left out")
            continue
        idx = np.flatnonzero(folds["fold"].to_numpy() == k)
        yield _FoldData(
            dataset=tb, fold=k, first=k == fold_ids[0],
            names=[Path(str(p)).stem for p in folds["image_path"].iloc[idx]],
            labels=folds["label"].to_numpy(int)[idx],
            image_paths=[str(p) for p in folds["image_path"].iloc[idx]],
            images={v: resize_images(np.asarray(s[idx, 0]),
                                     (config.get("cls") or {}).get("input_size"))
                    for v, s in loaded.items()},
            models={v: load_classifier(p, device=device)[0] for v, p in paths.items()},
        )


def _feature_space_rows(
    fold: _FoldData, config: Mapping[str, Any], col: _Collector
) -> list[dict[str, Any]]:
    from cxrbs.core.errors import CxrbsError
    from cxrbs.explain.feature_space import cluster_scores, extract_features, tsne_embedding

    feats = {v: extract_features(fold.models[v], fold.images[v]) for v in VARIANTS}
    scores = {v: cluster_scores(feats[v], fold.labels) for v in VARIANTS}
    rows = [{"dataset": fold.dataset, "variant": v, "fold": fold.fold, "n": len(fold.labels),
             **scores[v]} for v in VARIANTS]
    if fold.first:
        seed = int(config.get("seed", 0))
        try:
            embs = [tsne_embedding(feats[v], seed=seed) for v in VARIANTS]
        except CxrbsError as exc:
            col.note("feature_space", f"{fold.dataset}: no t-SNE ({exc})")
        else:
            col.add("feature_space", plot_tsne(
                *embs, fold.labels, scores, col.path(f"tsne_{fold.dataset}"),
                title=f"{fold.dataset}, fold {fold.fold} held-out images: "
                      "t-SNE of pooled deep features"))
    return rows


def _scaled_boxes(fold: _FoldData, i: int, boxes: Mapping[str, list[Box]]) -> list[Box] | None:
    """Boxes of image i in stack pixels (stacks are resized without keeping the aspect ratio)."""
    from cxrbs.data.io import image_info

    found = boxes.get(fold.names[i])
    if not found:
        return None
    info = image_info(fold.image_paths[i])
    side = fold.images["baseline"].shape[-1]
    sx, sy = side / float(info["width"]), side / float(info["height"])
    return [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in found]


def _box_rows(fold: _FoldData, boxes: Mapping[str, list[Box]], crm_threshold: float,
              col: _Collector) -> list[dict[str, Any]]:
    from cxrbs.explain.crm import mass_inside_boxes
    from cxrbs.core.errors import CxrbsError

    rows = []
    for i, name in enumerate(fold.names):
        if name not in boxes:
            continue
        try:
            scaled = _scaled_boxes(fold, i, boxes)
        except CxrbsError as exc:
            col.note("relevance_maps", f"{fold.dataset} {name}: boxes not scored ({exc})")
            continue
        for variant in VARIANTS:
            crm, cam = _heatmaps(fold.models[variant], fold.images[variant][i], crm_threshold)
            for method, heat in (("crm", crm), ("grad_cam", cam)):
                rows.append({"dataset": fold.dataset, "variant": variant, "fold": fold.fold,
                             "image": name, "method": method, "n_boxes": len(scaled or []),
                             "mass_inside": mass_inside_boxes(heat, scaled or [])})
    return rows


def _crm_examples(results: Path, config: Mapping[str, Any], fold: _FoldData,
                  boxes: Mapping[str, list[Box]], col: _Collector) -> None:
    """The fold's TB cases, right and wrong by the bone-suppressed model, with both models' maps."""
    from cxrbs.core.errors import CxrbsError

    report_cfg = config.get("report") or {}
    threshold = float((config.get("cls") or {}).get("threshold", 0.5))
    probs = {}
    for v in VARIANTS:
        p = results / "cls" / fold.dataset / v / f"fold{fold.fold}" / "predictions.csv"
        table = _read_csv(p, dtype={"image": str, "patient": str})
        if table is None:
            col.note("relevance_maps", f"{fold.dataset}: {p} is missing, no relevance-map figure")
            return
        deep = table[table["model"] == "deep"].set_index("image")["probability"]
        probs[v] = np.array([float(deep.get(n, np.nan)) for n in fold.names])
    cases = select_crm_cases(fold.labels, probs["bone_suppressed"], threshold,
                             int(report_cfg.get("crm_examples", 4)))
    if not cases:
        col.note("relevance_maps",
                 f"{fold.dataset}: no TB case among the fold-{fold.fold} held-out images")
        return
    crm_threshold = float(report_cfg.get("crm_threshold", 0.1))
    maps: dict[str, list[np.ndarray]] = {f"{k}_{v}": [] for k in ("crm", "cam") for v in VARIANTS}
    titles, shown_boxes = [], []
    for i, correct in cases:
        for v in VARIANTS:
            crm, cam = _heatmaps(fold.models[v], fold.images[v][i], crm_threshold)
            maps[f"crm_{v}"].append(crm)
            maps[f"cam_{v}"].append(cam)
        verdict = "right" if correct else "wrong"
        titles.append(f"{fold.names[i]}: TB, bone-suppressed model {verdict} "
                      f"(p={probs['bone_suppressed'][i]:.2f}; "
                      f"baseline p={probs['baseline'][i]:.2f})")
        try:
            shown_boxes.append(_scaled_boxes(fold, i, boxes) or [])
        except CxrbsError:
            shown_boxes.append([])
    idx = [i for i, _ in cases]
    col.add("relevance_maps", plot_crm_grid(
        fold.images["baseline"][idx], fold.images["bone_suppressed"][idx],
        np.stack(maps["crm_baseline"]), np.stack(maps["crm_bone_suppressed"]), titles,
        col.path(f"crm_{fold.dataset}"), gradcam_orig=np.stack(maps["cam_baseline"]),
        gradcam_bs=np.stack(maps["cam_bone_suppressed"]),
        boxes=shown_boxes if any(shown_boxes) else None))
