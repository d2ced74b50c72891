"""Offline augmentation of bone-suppression training pairs (the study grew 247 pairs to 4500).

Both images of a pair get the very same geometric transform and intensity filter, so the pixel
correspondence between a radiograph and its bone-free target survives augmentation.

The study's notebook augmented before splitting, so copies of one radiograph landed in both
training and validation. Here :func:`augment_pairs` augments whatever it is given; the workflow
splits by patient first (:func:`cxrbs.bs.pairs.prepare_pairs`) so that validation holds only
originals of patients never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import unsharp_mask
from tqdm import tqdm

from cxrbs.core.errors import CxrbsError

FILTERS = ("median", "max", "min", "unsharp")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; defaults follow the study.

    ``zoom`` is the magnification of the image content (>1 enlarges); ``rotation`` (degrees) and
    ``shift`` (pixels) are symmetric ranges; ``filter_prob`` is the chance that a sample gets one
    intensity filter, picked uniformly from ``filters``.
    """

    rotation: float = 10.0
    shift: float = 5.0
    hflip: bool = True
    zoom: tuple[float, float] = (0.9, 1.1)
    filter_prob: float = 0.5
    filters: tuple[str, ...] = FILTERS
    filter_size: int = 3
    unsharp_radius: float = 1.0
    unsharp_amount: float = 1.0

    def __post_init__(self) -> None:
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise CxrbsError(f"augment filters {unknown} are unknown: use some of {FILTERS}")
        if len(self.zoom) != 2 or not 0 < self.zoom[0] <= self.zoom[1]:
            raise CxrbsError(
                f"augment zoom must be (low, high) with 0 < low <= high, got {self.zoom}"
            )
        if not 0.0 <= self.filter_prob <= 1.0:
            raise CxrbsError(f"augment filter_prob must be in [0, 1], got {self.filter_prob}")
        if self.filter_prob > 0 and not self.filters:
            raise CxrbsError("augment filter_prob > 0 needs at least one entry in filters")
        if self.rotation < 0 or self.shift < 0:
            raise CxrbsError("augment rotation and shift are symmetric ranges: give values >= 0")
        if self.rotation > 45:  # = schema bs.augment.rotation
            raise CxrbsError(f"augment rotation must be <= 45 degrees, got {self.rotation}")
        if self.filter_size < 1:
            raise CxrbsError(f"augment filter_size must be >= 1, got {self.filter_size}")


@dataclass(frozen=True)
class _Draw:
    """One sample's random parameters, drawn up front so results do not depend on the filters."""

    angle: float
    zoom: float
    shift: tuple[float, float]
    flip: bool
    filt: str | None


def _draw(rng: np.random.Generator, cfg: AugmentConfig) -> _Draw:
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    zoom = rng.uniform(cfg.zoom[0], cfg.zoom[1])
    dy, dx = rng.uniform(-cfg.shift, cfg.shift, size=2)
    flip = bool(rng.random() < 0.5) and cfg.hflip
    use_filter = rng.random() < cfg.filter_prob
    pick = int(rng.integers(len(cfg.filters))) if cfg.filters else 0
    filt = cfg.filters[pick] if use_filter and cfg.filters else None
    return _Draw(float(angle), float(zoom), (float(dy), float(dx)), flip, filt)


def _affine(d: _Draw, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Output->input matrix and offset for one (row, col) affine: rotate, zoom, flip, shift.

    Forward map: p_out = c + A (p_in - c) + t about the centre c, so the inverse that
    ``ndimage.affine_transform`` wants is p_in = A^-1 p_out + (c - A^-1 (c + t)).
    """
    theta = np.deg2rad(d.angle)
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, -sin], [sin, cos]])
    flip = np.diag([1.0, -1.0 if d.flip else 1.0])
    forward = flip @ rot * d.zoom
    inverse = np.linalg.inv(forward)
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    offset = centre - inverse @ (centre + np.asarray(d.shift))
    return inverse, offset


def _per_channel(pair: np.ndarray, fn: Any) -> np.ndarray:
    """Run a 2-D operation on source and target separately (2-D kernels beat (1,k,k) 3-D ones)."""
    return np.stack([fn(channel) for channel in pair])


def _warp(pair: np.ndarray, d: _Draw) -> np.ndarray:
    """Apply one and the same affine to both channels."""
    mat, off = _affine(d, pair.shape[1:])
    return _per_channel(
        pair, lambda c: ndimage.affine_transform(c, mat, offset=off, order=1, mode="nearest")
    )


def _filter(pair: np.ndarray, name: str | None, cfg: AugmentConfig) -> np.ndarray:
    if name is None:
        return pair
    k = cfg.filter_size
    if name == "median":
        return _per_channel(pair, lambda c: ndimage.median_filter(c, size=k, mode="nearest"))
    if name == "max":
        return _per_channel(pair, lambda c: ndimage.maximum_filter(c, size=k, mode="nearest"))
    if name == "min":
        return _per_channel(pair, lambda c: ndimage.minimum_filter(c, size=k, mode="nearest"))
    return unsharp_mask(
        pair, radius=cfg.unsharp_radius, amount=cfg.unsharp_amount, preserve_range=True,
        channel_axis=0,
    )


def augment_one(pair: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A random augmentation of one (2, H, W) pair, clipped to [0, 1]."""
    d = _draw(rng, cfg)
    out = _filter(_warp(pair, d), d.filt, cfg)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _check_pairs(pairs: np.ndarray) -> np.ndarray:
    arr = np.asarray(pairs)
    if arr.ndim != 4 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise CxrbsError(
            f"pairs must be a non-empty (N, 2, H, W) array (channel 0 source, 1 target), "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise CxrbsError(f"pairs must be float in [0, 1], got dtype {arr.dtype}: use from_uint16")
    return arr


def _origins(n: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Originals first, then passes over random permutations so every pair gets its share."""
    extra = n_out - n
    passes = [rng.permutation(n) for _ in range(-(-extra // n))]
    tail = np.concatenate(passes)[:extra] if passes else np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(n), tail]).astype(np.int64)


def augment_pairs(
    pairs: np.ndarray,
    n_out: int,
    *,
    seed: int,
    config: AugmentConfig | None = None,
    progress: bool = False,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grow ``pairs`` (N, 2, H, W) to ``n_out`` pairs; return (augmented, origin index).

    The first N outputs are the originals unchanged; the rest are random augmentations of the
    pairs named in ``origin``. ``out`` may be a preallocated (n_out, 2, H, W) array, e.g. a
    ``np.lib.format.open_memmap``, to keep large sets out of memory.
    """
    cfg = config or AugmentConfig()
    arr = _check_pairs(pairs)
    n = arr.shape[0]
    if n_out < n:
        raise CxrbsError(
            f"n_out={n_out} is smaller than the {n} input pairs: augmentation only adds pairs; "
            f"set n_out >= {n}"
        )
    shape = (n_out, *arr.shape[1:])
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype.kind != "f":
        raise CxrbsError(
            f"preallocated augmentation output is {out.dtype} {out.shape}, need float {shape}"
        )
    rng = np.random.default_rng(seed)
    origin = _origins(n, n_out, rng)
    out[:n] = arr
    for i in tqdm(range(n, n_out), desc="augment", disable=not progress, unit="pair"):
        out[i] = augment_one(arr[origin[i]].astype(np.float32, copy=False), rng, cfg)
    return out, origin
