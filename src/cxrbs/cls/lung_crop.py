"""The classifier's lung crop: each image cut to its lung fields' bounding box before the resize
to the input side (``cls.lung_crop``), for the TB sets whose lung masks the config names.

Why: at a 128-pixel input a whole radiograph spends most pixels on shoulders, neck, abdomen and,
in Montgomery, a black band left by the resize; TB findings lie inside the lungs. The collections'
reference system (Jaeger et al. 2014) segments the lungs first. A box, not the mask itself, keeps
the classifier's view a normal image (no artificial edges for it to learn) and costs nothing at
prediction time. Boxes are relative (fractions of height and width), so they hold at any side.

An image without a mask takes the median box of the images that have one (96 of 662 Shenzhen have
none); the checkpoint records that fallback box, and ``cxrbs predict`` crops new files with it.
The boxes come from the images' masks, never from labels, so held-out images may use theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbs.core.errors import CxrbsError
from cxrbs.data.lung_masks import read_masks
from cxrbs.data.preprocess import from_uint16, resize_image

__all__ = ["DEFAULT_MARGIN", "LungCrop", "box_of_mask", "crop_images", "crop_masks",
           "crop_settings", "fallback_boxes", "lung_crop_boxes", "set_crop"]

DEFAULT_MARGIN = 0.05
#: the side at which masks are read to find the box (finer than any classifier input)
MASK_SIDE = 256


def box_of_mask(mask: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(top, left, bottom, right) of the mask's bounding box as fractions of the image, widened by
    ``margin`` of the box's own height/width on each side and clipped to the image."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise CxrbsError("a lung mask is empty: it marks no lung pixel (>= 128); fix or remove it")
    h, w = mask.shape
    top, bottom = rows[0] / h, (rows[-1] + 1) / h
    left, right = cols[0] / w, (cols[-1] + 1) / w
    dy, dx = margin * (bottom - top), margin * (right - left)
    return np.clip(np.array([top - dy, left - dx, bottom + dy, right + dx]), 0.0, 1.0)


@dataclass(frozen=True)
class LungCrop:
    """Per-image boxes of one set (N,4 fractions), which came from a mask, and the fallback box."""

    boxes: np.ndarray
    has_mask: np.ndarray
    fallback_box: np.ndarray
    margin: float
    mask_dir: str = ""

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps so that prediction crops the same way (plain types)."""
        return {"margin": float(self.margin), "mask_dir": self.mask_dir,
                "fallback_box": [round(float(v), 6) for v in self.fallback_box],
                "n_masks": int(self.has_mask.sum()), "n_images": int(self.has_mask.size)}


def lung_crop_boxes(names: Sequence[str], mask_dir: Path, *,
                    margin: float = DEFAULT_MARGIN) -> LungCrop:
    """Boxes for images named by their file stems, from the masks in ``mask_dir``."""
    if not 0.0 <= margin < 1.0:
        raise CxrbsError(f"cls.lung_crop.margin must be in [0, 1), got {margin}")
    masks = read_masks(Path(mask_dir), list(names), MASK_SIDE)
    if not masks:
        raise CxrbsError(f"no image has a lung mask in {mask_dir} (masks are PNGs named like the "
                         "images): fix datasets.<tb>.lung_masks or drop the set from "
                         "cls.lung_crop.datasets")
    found = {}
    for n, m in masks.items():
        try:
            found[n] = box_of_mask(m, margin)
        except CxrbsError as exc:
            raise CxrbsError(f"lung mask of {n} in {mask_dir}: {exc}") from None
    fallback = np.median(np.stack(list(found.values())), axis=0)
    boxes = np.stack([found.get(n, fallback) for n in names])
    has = np.array([n in found for n in names], dtype=bool)
    return LungCrop(boxes=boxes, has_mask=has, fallback_box=fallback, margin=float(margin),
                    mask_dir=str(mask_dir))


def crop_images(images: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """A stack (N,H,W) / (N,1,H,W), uint16 or float in [0,1], each cut to its box and resized
    to (size, size): float32 (N,size,size), the classifier's input."""
    arr = np.asarray(images)
    if arr.ndim == 4:
        arr = arr[:, 0]
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (arr.shape[0], 4):
        raise CxrbsError(f"lung crop: {arr.shape[0]} images but boxes of shape {boxes.shape}")
    h, w = arr.shape[1:]
    out = np.empty((arr.shape[0], size, size), dtype=np.float32)
    for i, (img, (t, l, b, r)) in enumerate(zip(arr, boxes, strict=True)):
        y0, x0 = int(np.floor(t * h)), int(np.floor(l * w))
        y1, x1 = max(int(np.ceil(b * h)), y0 + 2), max(int(np.ceil(r * w)), x0 + 2)
        part = img[y0:y1, x0:x1]
        part = from_uint16(part) if part.dtype == np.uint16 else part.astype(np.float32)
        out[i] = np.clip(resize_image(part, size), 0.0, 1.0)
    return out


def fallback_boxes(record: Mapping[str, Any], n: int) -> np.ndarray:
    """The recorded fallback box for ``n`` images that come without a mask (``cxrbs predict``)."""
    box = np.asarray(record.get("fallback_box"), dtype=np.float64)
    if box.shape != (4,):
        raise CxrbsError(f"checkpoint lung_crop record {dict(record)} has no fallback_box: "
                         "retrain the classifier with this version")
    return np.repeat(box[None], n, axis=0)


def crop_masks(masks: Sequence[np.ndarray | None], boxes: np.ndarray,
               size: int) -> list[np.ndarray | None]:
    """Lung masks cut to the same boxes as their images and resized to ``size`` (boolean, >= one
    half inside), so that a relevance map on the cropped view is scored inside the right pixels."""
    out: list[np.ndarray | None] = []
    for mask, box in zip(masks, np.asarray(boxes, dtype=np.float64), strict=True):
        if mask is None:
            out.append(None)
            continue
        view = crop_images(np.asarray(mask, dtype=np.float32)[None], box[None], size)[0]
        out.append(np.asarray(view >= 0.5))
    return out


def crop_settings(config: Mapping[str, Any], tb: str) -> dict[str, Any] | None:
    """``cls.lung_crop`` for one TB set, as the jobs take it ({"mask_dir", "margin"}), or None
    where the set is not cropped: the one reading of the key, for the fine-tuning and explain
    rules alike, so the models and the stages that feed them images always agree."""
    spec = (config.get("cls") or {}).get("lung_crop") or {}
    if tb not in (spec.get("datasets") or []):
        return None
    mask_dir = ((config.get("datasets") or {}).get(tb) or {}).get("lung_masks")
    if not mask_dir:
        raise CxrbsError(f"cls.lung_crop.datasets lists {tb!r} but datasets.{tb}.lung_masks is "
                         "not set: add the mask folder or drop the set from the list")
    return {"mask_dir": str(mask_dir), "margin": float(spec.get("margin", DEFAULT_MARGIN))}


def set_crop(settings: Mapping[str, Any] | None, names: Sequence[str]) -> LungCrop | None:
    """The boxes of a whole TB set (``names``: every image of its folds table, in order) for
    :func:`crop_settings`' settings, or None without a crop. Always the whole set, as fine-tuning
    computes them: the fallback box is the median over the set, so a stage that asked for one
    fold's images only would give an image without a mask another box than its model saw."""
    if settings is None:
        return None
    return lung_crop_boxes(names, Path(settings["mask_dir"]),
                           margin=float(settings.get("margin", DEFAULT_MARGIN)))
