"""Heat-map overlays and the box type: the display side of relevance maps, free of torch.

Kept apart from :mod:`cxrbs.explain.crm` so that the plotting modules draw maps without importing
torch (the figures rule only draws; the explain rule computes the maps).
"""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]
"""(x, y, w, h) in pixels of the image it is drawn on."""

__all__ = ["Box", "overlay"]


def overlay(
    image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4, cutoff: float = 0.2
) -> np.ndarray:
    """RGB float (H, W, 3): JET heat blended over the gray image only where heatmap >= cutoff.

    Weak relevance is left out so the radiograph stays readable under the colours.
    """
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float64)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image.ndim != 2 or image.shape != heatmap.shape:
        raise ValueError(
            "image and heatmap must be 2-D of the same shape, "
            f"got {image.shape} and {heatmap.shape}"
        )
    gray = np.repeat(np.clip(image, 0.0, 1.0)[..., None], 3, axis=2)
    heat = np.clip(np.nan_to_num(heatmap), 0.0, 1.0)
    colours = colormaps["jet"](heat)[..., :3]
    show = heat >= cutoff
    out = gray.copy()
    out[show] = alpha * colours[show] + (1.0 - alpha) * gray[show]
    return np.clip(out, 0.0, 1.0)
