"""The one preprocessing path shared by training, evaluation and inference.

The study resizes to 256x256, saturates the bottom and top 1% of pixel values and normalises to
[0, 1]. Using this module everywhere guarantees a model never sees inputs prepared differently
from what it was trained on.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray
from skimage.transform import resize

from cxrbs.core.errors import CxrbsError
from cxrbs.core.config import HIGH_PCT, LOW_PCT

PAIR_MODES = ("shared", "independent")
_MIN_SIZE = 8
# Beyond this magnitude float64 differences such as ``hi - lo`` can overflow to inf.
_SAFE_MAGNITUDE = 1e150
_UINT16_MAX = 65535


def _where(name: str | None) -> str:
    return f" ({name})" if name else ""


def _as_gray_float(img: np.ndarray, name: str | None = None) -> np.ndarray:
    """Return a float64 2-D copy; reject what no stretch could make sense of, saying why."""
    arr = np.asarray(img)
    where = _where(name)
    if arr.dtype.kind not in "biuf":
        raise CxrbsError(
            f"image{where} has dtype {arr.dtype}: expected a real-valued (bool, integer or float) "
            "array; convert it before preprocessing"
        )
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]  # alpha carries no radiographic signal
    elif arr.ndim != 2:
        raise CxrbsError(
            f"image{where} has shape {arr.shape}: expected a 2-D grayscale array or (H, W, 3/4) "
            "RGB(A); select one frame/channel first"
        )
    if arr.size == 0:
        raise CxrbsError(f"image{where} is empty (shape {arr.shape}): check the source file")
    out = arr.astype(np.float64)
    if np.isnan(out).any():
        raise CxrbsError(f"image{where} contains NaN values: fix or mask them before preprocessing")
    if np.isinf(out).any():
        raise CxrbsError(
            f"image{where} contains infinite values: fix or clip them before preprocessing"
        )
    if out.ndim == 3:
        out = rgb2gray(out)
    return out


def _tame(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scale huge-valued arrays by one common power of two; the stretch is scale invariant."""
    peak = max(float(np.max(np.abs(a))) for a in arrays)
    if peak <= _SAFE_MAGNITUDE:
        return arrays
    exponent = int(np.frexp(peak)[1])
    return tuple(np.ldexp(a, -exponent) for a in arrays)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < _MIN_SIZE:
        raise CxrbsError(
            f"preprocess size (config key image_size) must be an integer >= {_MIN_SIZE}, "
            f"got {size!r}"
        )
    return int(size)


def _is_real(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.integer, np.floating))


def _check_pcts(low_pct: float, high_pct: float) -> None:
    # A YAML "1" (a string) would otherwise fail deep inside a comparison with a TypeError.
    if not (_is_real(low_pct) and _is_real(high_pct)):
        raise CxrbsError(
            f"percentiles low_pct={low_pct!r}, high_pct={high_pct!r} (config keys "
            "preprocess.low_percentile/high_percentile) must be numbers"
        )
    if not (0.0 <= low_pct < high_pct <= 100.0):
        raise CxrbsError(
            f"percentiles low_pct={low_pct}, high_pct={high_pct} are invalid: "
            "need 0 <= low_pct < high_pct <= 100"
        )


def check_options(size: int, low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT) -> int:
    """Validate preprocessing settings before any image is read; returns ``size`` as an int."""
    _check_pcts(low_pct, high_pct)
    return _check_size(size)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize that low-pass filters first when shrinking, to avoid aliasing rib edges."""
    shrinking = img.shape[0] > size or img.shape[1] > size
    return resize(
        img, (size, size), order=1, anti_aliasing=shrinking, preserve_range=True, mode="edge"
    )


def stretch_limits(
    img: np.ndarray, low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT
) -> tuple[float, float]:
    """Percentile limits of the stretch, exposed so a pair can share its source's limits."""
    _check_pcts(low_pct, high_pct)
    lo, hi = np.percentile(np.asarray(img, dtype=np.float64), [low_pct, high_pct])
    return float(lo), float(hi)


def apply_stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo`` -> 0 and ``hi`` -> 1 linearly, saturating outside; float32 output.

    A flat image (``hi <= lo``) carries no contrast to stretch, so it becomes all zeros rather
    than dividing by zero.
    """
    arr = np.asarray(img, dtype=np.float64)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # huge ranges saturate, which is the intent
        out = (arr - lo) / (hi - lo)
    return np.nan_to_num(np.clip(out, 0.0, 1.0), nan=0.0).astype(np.float32)


def preprocess(
    img: np.ndarray, size: int, *, low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT
) -> np.ndarray:
    """Resize to (size, size) and saturate the extreme percentiles: the study's preprocessing.

    Accepts any real dtype, 2-D or RGB(A); returns float32 in [0, 1]. The stretch works on the
    resized image so the saturated fraction refers to the pixels the model actually sees.
    """
    size = _check_size(size)
    _check_pcts(low_pct, high_pct)
    (gray,) = _tame(_as_gray_float(img))
    small = resize_image(gray, size)
    lo, hi = stretch_limits(small, low_pct, high_pct)
    return apply_stretch(small, lo, hi)


def preprocess_pair(
    source: np.ndarray,
    target: np.ndarray,
    size: int,
    *,
    low_pct: float = LOW_PCT,
    high_pct: float = HIGH_PCT,
    mode: str = "shared",
    name: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess a (radiograph, bone-suppressed) pair.

    ``mode="shared"`` (default) stretches both images with the SOURCE's percentile limits, so the
    target stays on the source's intensity scale (target ~ source - bone): the identity baseline
    and residual learning remain meaningful, and a model never has to guess a per-image contrast
    change it cannot see at inference. ``mode="independent"`` stretches each image with its own
    limits, which is what the study's notebook effectively did.
    """
    size = _check_size(size)
    _check_pcts(low_pct, high_pct)
    if mode not in PAIR_MODES:
        raise CxrbsError(f"pair stretch mode {mode!r} is unknown: use one of {PAIR_MODES}")
    src = _as_gray_float(source, f"source of {name}" if name else "source")
    tgt = _as_gray_float(target, f"target of {name}" if name else "target")
    if src.shape != tgt.shape:
        raise CxrbsError(
            f"pair{_where(name)} is mismatched: source is {src.shape[0]}x{src.shape[1]} but target "
            f"is {tgt.shape[0]}x{tgt.shape[1]}; both images of a pair must have the same size"
        )
    src, tgt = _tame(src, tgt)
    src_small, tgt_small = resize_image(src, size), resize_image(tgt, size)
    src_lim = stretch_limits(src_small, low_pct, high_pct)
    tgt_lim = src_lim if mode == "shared" else stretch_limits(tgt_small, low_pct, high_pct)
    return apply_stretch(src_small, *src_lim), apply_stretch(tgt_small, *tgt_lim)


def resize_images(images: np.ndarray, size: int | None) -> np.ndarray:
    """A stack (N,H,W) or (N,1,H,W) in [0,1] at another side, as float32 (N,size,size).

    The classifier may train at a smaller input than the 256-pixel prepared images (a 2-core CPU
    trains a CNN 4x faster at 128); ``None`` or the same side only converts.
    """
    arr = np.asarray(images)
    if arr.ndim == 4:
        arr = arr[:, 0]
    if arr.dtype == np.uint16:
        arr = from_uint16(arr)
    arr = arr.astype(np.float32, copy=False)
    if size is None or arr.shape[1:] == (size, size):
        return arr
    size = _check_size(size)
    return np.stack([np.clip(resize_image(img, size), 0.0, 1.0) for img in arr]).astype(np.float32)


def to_uint16(img01: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] floats for on-disk stacks (16 bits keep sub-8-bit detail of the stretch)."""
    arr = np.asarray(img01, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise CxrbsError("cannot store an image with NaN/inf values as uint16: preprocess it first")
    return np.rint(np.clip(arr, 0.0, 1.0) * _UINT16_MAX).astype(np.uint16)


def from_uint16(arr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_uint16`: float32 in [0, 1]."""
    a = np.asarray(arr)
    if a.dtype != np.uint16:
        raise CxrbsError(
            f"expected a uint16 stack (as written by to_uint16), got dtype {a.dtype}: "
            "rebuild the prepared data"
        )
    return (a.astype(np.float32) / np.float32(_UINT16_MAX)).astype(np.float32)


def as_float01(array: np.ndarray) -> np.ndarray:
    """float32 copy in [0, 1] of a float or uint16 (x/65535) array, e.g. one batch of a memmap."""
    a = np.asarray(array)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32, copy=True)
    raise CxrbsError(
        f"image stack has dtype {a.dtype}: expected float in [0, 1] or uint16 scaled by 65535 "
        "(rebuild it with the prepare step)"
    )
