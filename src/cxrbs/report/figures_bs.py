"""Bone-suppression figures: example images, metrics against the identity, training curves.

Each ``plot_*`` function takes plain DataFrames/arrays, writes one PNG atomically and returns its
path, so it can be tested without a workflow run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from cxrbs.explain.selection import example_indices
from cxrbs.report.style import (
    BS_LOWER_IS_BETTER,
    BS_METRICS,
    IDENTITY,
    PLAIN_COLOUR,
    SIGNIFICANT_COLOUR,
    IDENTITY_COLOUR,
    as_stack,
    figure,
    fmt_p,
    metric_label,
    ordered,
    save,
    show_gray,
    truthy,
    yerr,
)


def plot_bs_examples(pairs_source: Any, preds: Any, targets: Any, names: Sequence[str],
                     metric_values: Sequence[float], out: str | Path, *, metric: str = "PSNR",
                     model_name: str = "model") -> Path:
    """Best, median and worst test image by ``metric``: input, prediction, target, error, bones.

    The |input - target| column shows the bone layer the model should remove; the error column
    beside it, on the same colour scale, shows how much of it is left.
    """
    src = as_stack(pairs_source, "pairs_source")
    pred = as_stack(preds, "preds")
    tgt = as_stack(targets, "targets")
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
    with figure(2.2 * len(cols), 2.35 * len(rows) + 0.3) as fig:
        axes = fig.subplots(len(rows), len(cols), squeeze=False)
        for r, (kind, i) in enumerate(rows):
            err, bone = np.abs(pred[i] - tgt[i]), np.abs(src[i] - tgt[i])
            both = np.concatenate([err.ravel(), bone.ravel()])
            vmax = max(float(np.percentile(both, 99.5)), 1e-6)
            for c, img in enumerate((src[i], pred[i], tgt[i])):
                show_gray(axes[r, c], img)
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
        return save(fig, out)


def plot_bs_metrics(summary: pd.DataFrame, out: str | Path) -> Path:
    """Mean with 95% CI per architecture and metric; the identity baseline hatched grey + a line.

    A model's bar is only meaningful next to the identity line (prediction = input): on real
    pairs the identity already scores high, because bones change few pixels.
    """
    need = {"arch", "test_set", "metric", "mean", "ci_low", "ci_high"}
    if not need <= set(summary.columns):
        raise ValueError(f"summary needs columns {sorted(need)}, has {list(summary.columns)}")
    metrics = ordered(summary["metric"], BS_METRICS)
    tests = sorted(summary["test_set"].astype(str).unique())
    archs = sorted(a for a in summary["arch"].astype(str).unique() if a != IDENTITY)
    archs += [IDENTITY] if (summary["arch"] == IDENTITY).any() else []
    colours = {a: f"C{i % 10}" for i, a in enumerate(a for a in archs if a != IDENTITY)}
    with figure(2.6 * len(metrics) + 0.4, 3.0 * len(tests) + 0.5) as fig:
        axes = fig.subplots(len(tests), len(metrics), squeeze=False)
        for r, test in enumerate(tests):
            for c, metric in enumerate(metrics):
                _bs_metric_panel(axes[r, c], summary, test, metric, archs, colours)
                axes[r, c].set_title(metric_label(metric) + (f"\n{test}" if len(tests) > 1 else ""))
        handles = [Patch(facecolor=IDENTITY_COLOUR, hatch="//", edgecolor="#555555",
                         label="identity baseline (prediction = input)")]
        fig.legend(handles=handles, loc="outside lower center", frameon=False)
        fig.suptitle("Bone-suppression quality on the paired test set"
                     + ("s" if len(tests) > 1 else f" {tests[0]}") + " (mean, 95% CI)")
        return save(fig, out)


def _bs_metric_panel(ax: Axes, summary: pd.DataFrame, test: str, metric: str, archs: list[str],
                     colours: dict[str, str]) -> None:
    rows = summary[(summary["test_set"].astype(str) == test) & (summary["metric"] == metric)]
    rows = rows.set_index(rows["arch"].astype(str)).reindex(archs)
    means = rows["mean"].to_numpy(dtype=float)
    lows, highs = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    x = np.arange(len(archs))
    bars = ax.bar(x, np.nan_to_num(means), yerr=yerr(means, lows, highs), capsize=3,
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
    with figure(3.4 * len(panels), 3.0) as fig:
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
        return save(fig, out)


def _model_vs_identity(paired: pd.DataFrame) -> pd.DataFrame:
    if "contrast" in paired:
        rows = paired[paired["contrast"].astype(str) == "model vs identity"]
    else:
        rows = paired[paired["model_b"].astype(str) == IDENTITY]
    return rows


def plot_bs_forest(paired: pd.DataFrame, out: str | Path) -> Path:
    """Forest plot of every model minus identity: one panel per metric, one row per test set and
    model, the paired estimate with its 95% CI, the zero line, and the adjusted p at the right.

    Red: the paired test supports the model (``a_better``); an open marker: no CI (too few pairs).
    """
    need = {"test_set", "metric", "model_a", "model_b", "difference", "ci_low", "ci_high"}
    if not need <= set(paired.columns):
        raise ValueError(f"paired needs columns {sorted(need)}, has {list(paired.columns)}")
    rows = _model_vs_identity(paired)
    if rows.empty:
        raise ValueError("no model-vs-identity rows to draw")
    metrics = ordered(rows["metric"], BS_METRICS)
    keys = sorted({(str(t), str(m)) for t, m in zip(rows["test_set"], rows["model_a"],
                                                      strict=True)})
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    with figure(3.9 * ncols + 0.6, (0.2 * len(keys) + 1.0) * nrows + 0.5) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for k, (ax, metric) in enumerate(zip(axes, metrics, strict=False)):
            sel = rows[rows["metric"] == metric]
            _forest_panel(ax, sel, keys, labels=k % ncols == 0)
            better = "←" if metric in BS_LOWER_IS_BETTER else "→"
            ax.set_title(metric_label(metric).split("\n")[0])
            ax.set_xlabel(f"model − identity ({better} better)", fontsize=8)
        for ax in axes[len(metrics):]:
            ax.set_axis_off()
        fig.suptitle("Each model minus identity, per test image pair (median difference, 95% CI; "
                     "red: the paired test supports the model)")
        return save(fig, out)


def _forest_panel(ax: Axes, sel: pd.DataFrame, keys: list[tuple[str, str]], *,
                  labels: bool) -> None:
    index = {key: i for i, key in enumerate(keys)}
    y_of = {key: len(keys) - 1 - i for key, i in index.items()}
    for _, r in sel.iterrows():
        key = (str(r["test_set"]), str(r["model_a"]))
        y, d = y_of[key], float(r["difference"])
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
        has_ci = np.isfinite(lo) and np.isfinite(hi)
        colour = SIGNIFICANT_COLOUR if truthy(r.get("a_better")) else PLAIN_COLOUR
        if has_ci:
            ax.errorbar([d], [y], xerr=yerr(np.array([d]), np.array([lo]), np.array([hi])),
                        fmt="o", color=colour, capsize=2.5, markersize=4)
        else:
            ax.plot([d], [y], "o", mfc="white", color=colour, markersize=4)
        ax.annotate(fmt_p(r.get("p_adjusted", r.get("p_value"))).replace("p = ", ""), (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=6.5, color=colour)
    ax.axvline(0.0, color="#888888", linestyle="--", linewidth=1)
    ax.annotate("adj. p", (1.01, 1.0), xycoords="axes fraction", va="bottom", fontsize=6.5,
                color="#555555")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ticks = [y_of[k] for k in keys]
    ax.set_yticks(ticks, [f"{t}: {m}" for t, m in keys] if labels else [""] * len(keys))
    ax.set_ylim(-0.7, len(keys) - 0.3)
    for y in range(len(keys) - 1):  # a rule between test sets
        if keys[len(keys) - 1 - y][0] != keys[len(keys) - 2 - y][0]:
            ax.axhline(y + 0.5, color="#dddddd", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)


def plot_bs_scatter(per_image: Mapping[str, pd.DataFrame], out: str | Path, *,
                    model_name: str, metric: str = "psnr") -> Path:
    """Per test set, each image's ``metric`` for the model (y) against identity (x), with the
    diagonal: points above it (below it for MAE) are images the model improved.

    ``per_image`` maps a test set to a frame with columns ``model`` and ``identity``.
    """
    tests = [t for t, f in per_image.items() if not f.empty]
    if not tests:
        raise ValueError("no per-image scores to draw")
    ncols = min(4, len(tests))
    nrows = -(-len(tests) // ncols)
    with figure(3.0 * ncols + 0.3, 3.0 * nrows + 0.5) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, test in zip(axes, tests, strict=False):
            frame = per_image[test]
            x = frame["identity"].to_numpy(float)
            y = frame["model"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            lo = float(np.min(np.concatenate([x[ok], y[ok]]))) if ok.any() else 0.0
            hi = float(np.max(np.concatenate([x[ok], y[ok]]))) if ok.any() else 1.0
            pad = max(0.05 * (hi - lo), 1e-6)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#888888", linestyle="--",
                    linewidth=1, label="model = identity")
            better = (y < x) if metric in BS_LOWER_IS_BETTER else (y > x)
            ax.scatter(x[ok & better], y[ok & better], s=14, color=SIGNIFICANT_COLOUR,
                       label="model better")
            ax.scatter(x[ok & ~better], y[ok & ~better], s=14, color="#1f77b4",
                       label="identity better or equal")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal")
            name = metric_label(metric).split(",")[0].split(" (")[0]
            ax.set_xlabel(f"identity (unchanged image) {name}")
            ax.set_ylabel(f"{model_name} {name}")
            role = " (selection)" if test == "validation" else ""
            ax.set_title(f"{test}{role}: {int((ok & better).sum())} of {int(ok.sum())} "
                         "improved", fontsize=8.5)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="lower right", fontsize=7)
        for ax in axes[len(tests):]:
            ax.set_axis_off()
        fig.suptitle(f"Per image: {model_name} against leaving the image unchanged "
                     f"({metric_label(metric).split(',')[0].split(' (')[0]})")
        return save(fig, out)
