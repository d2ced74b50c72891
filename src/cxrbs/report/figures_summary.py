"""The report's first-screen figure: the two answers side by side.

Left, the primary endpoint per TB data set (ΔAUC, bone-suppressed − original, 95% CI); right, the
selected bone-suppression model's gain over identity on the selection metric per test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from cxrbs.report.style import (
    PLAIN_COLOUR,
    SIGNIFICANT_COLOUR,
    figure,
    fmt_p,
    metric_label,
    save,
    truthy,
    yerr,
)


def _panel(ax: Axes, labels: list[str], diff: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           p: list[float], significant: list[bool]) -> None:
    y = np.arange(len(labels))[::-1]
    for yi, d, l_, h, pv, sig in zip(y, diff, lo, hi, p, significant, strict=True):
        colour = SIGNIFICANT_COLOUR if sig else PLAIN_COLOUR
        if np.isfinite(l_) and np.isfinite(h):
            ax.errorbar([d], [yi], xerr=yerr(np.array([d]), np.array([l_]), np.array([h])),
                        fmt="o", color=colour, capsize=3, markersize=5)
        else:
            ax.plot([d], [yi], "o", mfc="white", color=colour, markersize=5)
        ax.annotate(fmt_p(pv), (1.01, yi), xycoords=("axes fraction", "data"), va="center",
                    fontsize=7.5, color=colour)
    ax.axvline(0.0, color="#888888", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", alpha=0.3)


def plot_summary(comparison: pd.DataFrame | None, paired: pd.DataFrame | None, arch: str | None,
                 metric: str, out: str | Path) -> Path:
    """Primary ΔAUC per TB set and the selected model's gain over identity per test set."""
    primary = (comparison[comparison["family"].astype(str) == "primary"]
               if comparison is not None and "family" in comparison else pd.DataFrame())
    gain = pd.DataFrame()
    if paired is not None and arch is not None and not paired.empty:
        gain = paired[(paired["model_a"].astype(str) == arch)
                      & (paired["model_b"].astype(str) == "identity")
                      & (paired["metric"] == metric)
                      & (paired["test_set"].astype(str) != "validation")]
    panels = [df for df in (primary, gain) if not df.empty]
    if not panels:
        raise ValueError("neither a primary comparison nor a paired bone-suppression test to draw")
    rows = max(len(df) for df in panels)
    with figure(3.6 * len(panels) + 0.8, 0.32 * rows + 1.3) as fig:
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        k = 0
        if not primary.empty:
            f = primary.reset_index(drop=True)
            _panel(axes[k], f["dataset"].astype(str).tolist(), f["difference"].to_numpy(float),
                   f["ci_low"].to_numpy(float), f["ci_high"].to_numpy(float),
                   f["p_adjusted"].astype(float).tolist(),
                   [str(d).endswith(" better") or str(d).endswith(" worse")
                    for d in f.get("decision", [""] * len(f))])
            axes[k].set_title("TB classification: ΔAUC (primary)")
            axes[k].set_xlabel("AUC bone-suppressed − original (95% CI)", fontsize=8)
            k += 1
        if not gain.empty:
            g = gain.sort_values("test_set").reset_index(drop=True)
            name = metric_label(metric).split(",")[0].split(" (")[0]
            _panel(axes[k], g["test_set"].astype(str).tolist(), g["difference"].to_numpy(float),
                   g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float),
                   g["p_adjusted"].astype(float).tolist(),
                   [truthy(v) for v in g.get("a_better", [False] * len(g))])
            axes[k].set_title(f"Bone suppression: {arch} − identity")
            axes[k].set_xlabel(f"{name} gain (median, 95% CI)", fontsize=8)
        return save(fig, out)
