"""Checks every image reader and writer shares: printable names, size limits, the [0,1] contract.

Kept apart from ``io`` (PNG/JPEG/TIFF) and ``dicom`` so both formats fail with the same words:
every failure is a ``CxrbsError`` naming the file, including names that are not valid UTF-8.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from cxrbs.core.errors import CxrbsError
from cxrbs.data.files import DICOM_SUFFIXES, IMAGE_SUFFIXES, RASTER_SUFFIXES, has_dicom_marker

PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]

DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 32
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601, as Pillow's "L"


def show(path: PathArg) -> str:
    """A printable file name: undecodable bytes appear as ``\\xff`` instead of crashing print."""
    text = os.fsdecode(path)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return ascii(text)


def fail(path: PathArg, reason: str) -> CxrbsError:
    message = f"{show(path)}: {reason}"
    # Library messages may quote the raw name again; keep the whole line encodable.
    return CxrbsError(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def as_path(path: PathArg) -> Path:
    return Path(os.fsdecode(path))


def special_kind(mode: int) -> str:
    """Words for a file that is not a regular file or a folder (from ``os.stat``'s mode)."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def file_kind(path: Path) -> str:
    """'raster' or 'dicom', after the checks that need no decoder (exists, non-empty, type)."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise fail(path, "file not found: check the path") from exc
    except OSError as exc:
        raise fail(path, f"cannot access file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise fail(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):  # before the size: a device or a pipe reports 0 bytes
        raise fail(path, f"is {special_kind(st.st_mode)}, not a regular file: give the path of "
                         "an image file (copy the data into a file first)")
    size = st.st_size
    if size == 0:
        raise fail(path, "file is empty (0 bytes): re-download or re-export it")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "raster"
    # DICOM files are often named by UID ("1.2.840.113619.2.55") or have no suffix at all.
    if suffix in DICOM_SUFFIXES or has_dicom_marker(path):
        return "dicom"
    allowed = ", ".join(sorted(IMAGE_SUFFIXES))
    raise fail(
        path,
        f"unsupported file type {suffix or '(no suffix)'!r}: convert it to one of "
        f"{allowed} (or DICOM with the 'DICM' marker)",
    )


def check_limits(max_pixels: int, min_side: int) -> None:
    """A limit from a config file may be a string or a float: say which key, not a TypeError."""
    for key, value in (("max_image_pixels", max_pixels), ("min_side", min_side)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise CxrbsError(f"{key} must be a positive integer, got {value!r}")


def check_size(path: Path, width: int, height: int, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise fail(
            path,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit "
            f"of {max_pixels:,}: downscale it or raise the config key "
            "max_image_pixels",
        )
    if min(width, height) < min_side:
        raise fail(
            path,
            f"image is {width}x{height} pixels, smaller than {min_side} px on a "
            "side: this is not a usable chest X-ray (thumbnail or icon?)",
        )


def finish(path: Path, arr: np.ndarray) -> np.ndarray:
    """The readers' contract: 2-D, finite, float32 in [0,1], C-contiguous."""
    if arr.ndim != 2:
        raise fail(path, f"decoded to shape {arr.shape}, expected a 2-D grayscale image")
    if not np.all(np.isfinite(arr)):
        raise fail(path, "contains NaN or infinite pixel values: re-export the image")
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def min_max(arr: np.ndarray) -> np.ndarray:
    """Stretch to [0,1]; a flat image becomes all zeros rather than a division by zero."""
    arr = arr.astype(np.float64, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def to_unit_2d(path: PathArg, img: np.ndarray) -> np.ndarray:
    """What writers accept: a finite 2-D image, clipped to [0,1]."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 2:
        raise fail(path, f"cannot write an image of shape {arr.shape}: expected 2-D (H, W)")
    if not np.all(np.isfinite(arr)):
        raise fail(path, "refusing to write an image with NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


def raw_range(raw: np.ndarray) -> dict[str, int | float]:
    """Plain Python numbers, so the info dict serialises to JSON/YAML as is."""
    as_py = int if np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_ else float
    return {"min": as_py(raw.min()), "max": as_py(raw.max())}
