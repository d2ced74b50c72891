"""Relevance-map and feature-space figures, drawn from the explain rule's arrays (no torch here).

Each ``plot_*`` function takes plain arrays, writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Rectangle

from cxrbs.explain.overlay import Box, overlay
from cxrbs.report.style import (
    BOX_COLOUR,
    VARIANT_LABELS,
    as_stack,
    figure,
    fmt,
    save,
    show_gray,
    wrap,
)


def plot_crm_grid(images_orig: Any, images_bs: Any, crm_orig: Any, crm_bs: Any,
                  titles: Sequence[str], out: str | Path, *, gradcam_orig: Any = None,
                  gradcam_bs: Any = None, boxes: Sequence[Sequence[Box]] | None = None) -> Path:
    """One row per case: original and bone-suppressed image with their CRM (and Grad-CAM) overlays.

    ``boxes`` (one list per case, pixel coordinates of the shown images) are drawn on every panel,
    so the reader can see whether the relevance falls on the expert's finding.
    """
    orig, bs = as_stack(images_orig, "images_orig"), as_stack(images_bs, "images_bs")
    maps = {"orig": as_stack(crm_orig, "crm_orig"), "bs": as_stack(crm_bs, "crm_bs")}
    cams = None
    if gradcam_orig is not None and gradcam_bs is not None:
        cams = {"orig": as_stack(gradcam_orig, "gradcam_orig"),
                "bs": as_stack(gradcam_bs, "gradcam_bs")}
    n = len(orig)
    if n == 0 or not (len(bs) == len(titles) == n == len(maps["orig"]) == len(maps["bs"])):
        raise ValueError(
            "need one original and bone-suppressed image, CRM pair and title per case (>= 1)"
        )
    panels: list[tuple[str, str, str | None]] = []
    for key, name in (("orig", "original"), ("bs", "bone-suppressed")):
        panels += [(key, name, None), (key, f"{name} + CRM", "crm")]
        panels += [(key, f"{name} + Grad-CAM", "cam")] if cams is not None else []
    with figure(2.25 * len(panels), 2.45 * n + 0.4) as fig:
        axes = fig.subplots(n, len(panels), squeeze=False)
        for i in range(n):
            for c, (key, name, kind) in enumerate(panels):
                ax = axes[i, c]
                img = orig[i] if key == "orig" else bs[i]
                if kind is None:
                    show_gray(ax, img)
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
            axes[i, 0].set_ylabel(wrap(titles[i], 30), fontsize=7.5)
        fig.suptitle("Class-selective relevance maps (CRM) and Grad-CAM of TB cases"
                     + ("; green boxes: expert annotations" if boxes is not None else ""))
        return save(fig, out)


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
    with figure(7.6, 3.9) as fig:
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
                         f"{fmt(s.get('silhouette'))}, Davies-Bouldin "
                         f"{fmt(s.get('davies_bouldin'))}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.legend(loc="best")
        fig.suptitle(title or "t-SNE of pooled deep features of held-out images")
        return save(fig, out)
