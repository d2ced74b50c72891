"""Online, pair-consistent augmentation of bone-suppression training crops (``bs.train.online_augment``).

Each training crop gets a fresh random draw every step (unlike :mod:`cxrbs.bs.augment`, which
grows a fixed set of pairs once). Every change is applied to the radiograph and its bone-free
target alike, so the target stays the soft-tissue image of the augmented input. The levers aim at
what differs between hospitals: pixel spacing (``scale``: rib width in pixels), sharpness
(``blur_sigma``, ``unsharp``), exposure and processing curve (``gamma``, ``window_jitter``: a
re-stretch that keeps about the 1/99 percentile saturation seen at inference) and noise.
Blur, unsharp masking and the re-stretch are linear, so for them target = f(source) − f(bone)
holds exactly; gamma is monotone but not linear (the bundled v1 recipe used it anyway).

All defaults are "off": a config that does not name ``online_augment`` trains as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from cxrbs.core.errors import CxrbsError

__all__ = ["OnlineAugment", "augment_crop", "draw_crop"]

_RANGES = ("gamma", "noise_std", "blur_sigma", "unsharp", "scale")


@dataclass(frozen=True)
class OnlineAugment:
    """Probabilities and ranges; a range ``[lo, hi]`` is drawn uniformly (gamma and scale
    log-uniformly). ``prob`` is the chance that a crop gets the intensity changes at all."""

    prob: float = 0.0
    hflip: float = 0.0
    gamma: tuple[float, float] = (1.0, 1.0)
    window_jitter: float = 0.0
    noise_std: tuple[float, float] = (0.0, 0.0)
    blur_sigma: tuple[float, float] = (0.0, 0.0)
    unsharp: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> OnlineAugment:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CxrbsError(f"unknown bs.train.online_augment key(s) {', '.join(unknown)}: "
                             f"valid keys are {', '.join(sorted(known))}")
        for key in _RANGES:
            if key in values:
                v = values[key]
                if not isinstance(v, (list, tuple)) or len(v) != 2:
                    raise CxrbsError(f"bs.train.online_augment.{key} must be a [low, high] pair, "
                                     f"got {v!r}")
                values[key] = (float(v[0]), float(v[1]))
        aug = cls(**values)
        aug.validate()
        return aug

    def validate(self) -> None:
        for key in ("prob", "hflip"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise CxrbsError(f"bs.train.online_augment.{key} must be in [0, 1], "
                                 f"got {getattr(self, key)}")
        if not 0.0 <= self.window_jitter < 0.5:
            raise CxrbsError("bs.train.online_augment.window_jitter must be in [0, 0.5), "
                             f"got {self.window_jitter}")
        for key in _RANGES:
            lo, hi = getattr(self, key)
            positive = key in ("gamma", "scale")
            if lo > hi or (positive and lo <= 0) or (not positive and lo < 0):
                need = "0 < low <= high" if positive else "0 <= low <= high"
                raise CxrbsError(f"bs.train.online_augment.{key} must be [low, high] with {need}, "
                                 f"got {[lo, hi]}")

    @property
    def active(self) -> bool:
        return self != OnlineAugment()


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else math.exp(rng.uniform(math.log(lo), math.log(hi)))


def draw_crop(pair: np.ndarray, crop: int | None, aug: OnlineAugment,
              rng: np.random.Generator) -> np.ndarray:
    """A (2, c, c) float32 window of a (2, H, W) float pair at a random position and scale.

    ``scale`` s > 1 magnifies (a window of c/s pixels resized up to c): ribs look wider, as on a
    scanner with finer pixel spacing. The window never leaves the image.
    """
    _, h, w = pair.shape
    if crop is None:
        out = pair
    else:
        s = _log_uniform(rng, *aug.scale)
        side = int(min(h, w, max(8, round(crop / s))))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        out = pair[:, y0 : y0 + side, x0 : x0 + side]
        if side != crop:
            f = crop / side
            out = np.stack([ndimage.zoom(c, f, order=1, mode="nearest", grid_mode=True)
                            for c in out])[:, :crop, :crop]
    return np.ascontiguousarray(out, dtype=np.float32)


def augment_crop(pair: np.ndarray, aug: OnlineAugment, rng: np.random.Generator) -> np.ndarray:
    """Flip, then (with probability ``prob``) blur or sharpen, gamma, re-stretch and noise,
    each applied identically to both channels of a (2, c, c) pair in [0, 1]."""
    if aug.hflip and rng.random() < aug.hflip:
        pair = pair[:, :, ::-1]
    if not aug.prob or rng.random() >= aug.prob:
        return np.ascontiguousarray(pair, dtype=np.float32)
    out = pair.astype(np.float32, copy=True)
    sigma = rng.uniform(*aug.blur_sigma)
    amount = rng.uniform(*aug.unsharp)
    if sigma > 0 and amount > 0 and rng.random() < 0.5:
        sigma = 0.0  # blur or sharpen, not both at once
    if sigma > 0:
        out = np.stack([ndimage.gaussian_filter(c, sigma) for c in out])
    elif amount > 0:
        out = out + amount * (out - np.stack([ndimage.gaussian_filter(c, 1.0) for c in out]))
    g = _log_uniform(rng, *aug.gamma)
    if g != 1.0:
        out = np.power(np.clip(out, 0.0, 1.0), g)
    j = aug.window_jitter
    if j > 0:
        lo, hi = rng.uniform(-j, j), rng.uniform(1 - j, 1 + j)
        out = (out - lo) / (hi - lo)
    std = rng.uniform(*aug.noise_std)
    if std > 0:
        out = out + rng.normal(0.0, std, size=out.shape[1:]).astype(np.float32)[None]
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
