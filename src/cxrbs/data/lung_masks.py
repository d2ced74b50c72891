"""Lung-field masks of the TB collections (``datasets.<tb>.lung_masks``), read one way for everyone.

Why one reader: the arm measures (bone left, relevance inside the lungs) and the classifier's lung
crop both need a mask aligned with the prepared stack. The masks are PNGs named by the images' file
stems, drawn at the images' resolution with interpolated grey edges (``>= 128`` inside). They are
resized the way the stacks were (plain resize, aspect ratio not kept) and thresholded at one half.
Not every image has one (566 of 662 Shenzhen): callers get only the masks that exist and decide
what a missing one means.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrbs.core.errors import CxrbsError

__all__ = ["MASK_SUFFIXES", "read_mask", "read_masks"]

MASK_SUFFIXES = (".png", ".PNG")


def read_mask(path: Path, size: int) -> np.ndarray:
    """A lung mask as a boolean (size, size) array."""
    import imageio.v3 as iio
    from skimage.transform import resize

    try:
        arr = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises several types for unreadable files
        raise CxrbsError(f"lung mask {path} cannot be read ({exc}): replace the file or remove "
                         "it (an image without a mask is treated as having none)") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise CxrbsError(f"lung mask {path} has shape {arr.shape}: expected a 2-D grey image")
    inside = (arr >= 128).astype(np.float64) if arr.max() > 1 else (arr > 0).astype(np.float64)
    return np.asarray(resize(inside, (size, size), order=1, anti_aliasing=True) >= 0.5)


def read_masks(mask_dir: Path | None, names: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """Masks of those ``names`` (file stems) that have one in ``mask_dir``; none without a dir."""
    if mask_dir is None:
        return {}
    if not Path(mask_dir).is_dir():
        raise CxrbsError(f"lung-mask folder {mask_dir} (datasets.<tb>.lung_masks) does not exist:"
                         " fix the path or remove the key")
    files = {p.stem: p for p in Path(mask_dir).iterdir() if p.suffix in MASK_SUFFIXES}
    return {n: read_mask(files[n], size) for n in names if n in files}
