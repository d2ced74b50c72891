"""Before/after figure of bone suppression on one radiograph, for model cards and the README.

Rows: one per model (a second model, e.g. the previous bundled version, makes the comparison
"ribs and clavicles fainter than before" visible); columns: input, output, removed bone layer.
The bone-layer panels of all rows share one colour scale, so a fainter layer means less bone
removed, not a different display window.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cxrbs.core import atomic
from cxrbs.core.config import HIGH_PCT, LOW_PCT


def before_after_figure(models: Mapping[str, Any], image_path: Path, out: Path, *,
                        flip_tta: bool = False) -> dict[str, Any]:
    """Write a PNG; ``models`` maps a label to ``(model, checkpoint metadata)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrbs.bs.suppress import model_image_size, suppress_image
    from cxrbs.data.io import read_image

    img = read_image(image_path)
    step = max(1, max(img.shape) // 500)  # display only: keeps the PNG small
    rows = []
    for label, (model, meta) in models.items():
        res = suppress_image(model, img, size=model_image_size(meta),
                             low_pct=float(meta.get("low_pct", LOW_PCT)),
                             high_pct=float(meta.get("high_pct", HIGH_PCT)), flip_tta=flip_tta)
        rows.append((label, res[::step, ::step], (img - res)[::step, ::step]))
    vmax = max(float(np.percentile(b, 99.5)) for _, _, b in rows) or 1e-3
    fig, axes = plt.subplots(len(rows), 3, figsize=(9.6, 3.4 * len(rows)), dpi=80, squeeze=False)
    stats = {}
    for ax_row, (label, res, bone) in zip(axes, rows):
        panels = [(img[::step, ::step], f"input ({Path(image_path).name})", "gray", 0.0, 1.0),
                  (res, f"{label}: bone-suppressed", "gray", 0.0, 1.0),
                  (bone, f"{label}: removed bone layer", "magma", 0.0, vmax)]
        for ax, (im, title, cmap, lo, hi) in zip(ax_row, panels):
            ax.imshow(im, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        stats[label] = {"bone_layer_mean": float(bone.mean()),
                        "bone_layer_p99": float(np.percentile(bone, 99))}
    fig.suptitle("bone layers on one colour scale: brighter = more bone removed", fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return {"file": str(out), "input_shape": list(img.shape), "models": stats}
