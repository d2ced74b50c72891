"""Chest X-ray reading and writing: PNG/JPEG/TIFF through Pillow, DICOM through pydicom.

Every reader returns float32 in [0,1] in display polarity (air and lungs dark, bone bright), so
no later step needs to know where an image came from. Sizes are checked from the header before
any pixel is decoded, so a huge or hostile file is refused cheaply. Every failure is a
``CxrbsError`` naming the file, including files whose names are not valid UTF-8.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from cxrbs.core.atomic import atomic_path
from cxrbs.core.errors import CxrbsError

PathArg = str | bytes | os.PathLike[str] | os.PathLike[bytes]

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SUPPORTED_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 32

# Only these Pillow plugins may claim a file: fewer decoders exposed to untrusted bytes, and
# random bytes are never "recognised" as some obscure format.
_PIL_FORMATS = ("PNG", "JPEG", "TIFF")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R BT.601, as Pillow's "L"
_U16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_DIRECT_MODES = frozenset({"1", "L", "LA", "I", "F", "RGB", "RGBA"}) | _U16_MODES
_CONVERT_MODES = {"P": "RGBA", "PA": "RGBA", "RGBX": "RGB", "RGBa": "RGB", "CMYK": "RGB",
                  "YCbCr": "RGB"}  # fmt: skip

_CR = "1.2.840.10008.5.1.4.1.1.1"
# DX, mammography and intra-oral X-ray "for presentation"; each "for processing" twin adds ".1".
_DX_PRESENTATION = frozenset(
    {"1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.3"}
)
_DX_PROCESSING = frozenset(uid + ".1" for uid in _DX_PRESENTATION)
# Template attributes that describe the template's pixels, not the derived image's.
_STALE_KEYWORDS = (
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction",
    "VOILUTSequence", "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "PresentationLUTShape", "PresentationLUTSequence", "NumberOfFrames", "FrameIncrementPointer",
    "PlanarConfiguration", "SmallestImagePixelValue", "LargestImagePixelValue",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "PixelAspectRatio", "IconImageSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelDataProviderURL",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
)  # fmt: skip
# Common non-image files in image folders: not worth sniffing for a DICOM marker.
_NOT_DICOM = frozenset({".txt", ".csv", ".json", ".md", ".xml", ".yaml", ".yml", ".zip", ".gz"})
_SPACING_KEYWORDS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


# ---------------------------------------------------------------- names and errors


def _show(path: PathArg) -> str:
    """A printable file name: undecodable bytes appear as ``\\xff`` instead of crashing print."""
    text = os.fsdecode(path)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return ascii(text)


def _fail(path: PathArg, reason: str) -> CxrbsError:
    message = f"{_show(path)}: {reason}"
    # Library messages may quote the raw name again; keep the whole line encodable.
    return CxrbsError(message.encode("utf-8", "backslashreplace").decode("utf-8"))


def _as_path(path: PathArg) -> Path:
    return Path(os.fsdecode(path))


def is_dicom(path: PathArg) -> bool:
    """By suffix or by the 'DICM' marker: DICOM files are often named by UID, without a suffix."""
    path = _as_path(path)
    return path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_marker(path)


def _has_dicom_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _kind(path: Path) -> str:
    """'raster' or 'dicom', after the checks that need no decoder (exists, non-empty, type)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise _fail(path, "file not found: check the path") from exc
    except OSError as exc:
        raise _fail(path, f"cannot access file: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise _fail(path, "is a folder, not an image file")
    if size == 0:
        raise _fail(path, "file is empty (0 bytes): re-download or re-export it")
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "raster"
    # DICOM files are often named by UID ("1.2.840.113619.2.55") or have no suffix at all.
    if suffix in DICOM_SUFFIXES or _has_dicom_marker(path):
        return "dicom"
    allowed = ", ".join(sorted(SUPPORTED_SUFFIXES))
    raise _fail(
        path,
        f"unsupported file type {suffix or '(no suffix)'!r}: convert it to one of "
        f"{allowed} (or DICOM with the 'DICM' marker)",
    )


def _check_limits(max_pixels: int, min_side: int) -> None:
    """A limit from a config file may be a string or a float: say which key, not a TypeError."""
    for key, value in (("max_image_pixels", max_pixels), ("min_side", min_side)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise CxrbsError(f"{key} must be a positive integer, got {value!r}")


def _check_size(path: Path, width: int, height: int, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise _fail(
            path,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit "
            f"of {max_pixels:,}: downscale it or raise the config key "
            "max_image_pixels",
        )
    if min(width, height) < min_side:
        raise _fail(
            path,
            f"image is {width}x{height} pixels, smaller than {min_side} px on a "
            "side: this is not a usable chest X-ray (thumbnail or icon?)",
        )


def _finish(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise _fail(path, f"decoded to shape {arr.shape}, expected a 2-D grayscale image")
    if not np.all(np.isfinite(arr)):
        raise _fail(path, "contains NaN or infinite pixel values: re-export the image")
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def _min_max(arr: np.ndarray) -> np.ndarray:
    """Stretch to [0,1]; a flat image becomes all zeros rather than a division by zero."""
    arr = arr.astype(np.float64, copy=False)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


# ---------------------------------------------------------------- PNG / JPEG / TIFF


@contextlib.contextmanager
def _open_raster(path: Path) -> Iterator[Image.Image]:
    """Open lazily: Pillow parses only the header here, pixels are decoded on first access."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check ourselves
            img = Image.open(path, formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _fail(path, f"image is too large for Pillow to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise _fail(
            path,
            "not a readable PNG, JPEG or TIFF image (corrupt file, or another "
            "format saved under an image suffix)",
        ) from exc
    except OSError as exc:
        raise _fail(path, f"cannot read file: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise _fail(path, f"corrupt image header ({type(exc).__name__}: {exc})") from exc
    with img:
        try:  # a TIFF's page list is parsed here, lazily: broken ones raise TypeError...
            frames = getattr(img, "n_frames", 1)
        except Exception as exc:  # noqa: BLE001
            raise _fail(path, f"corrupt image structure ({type(exc).__name__}: {exc})") from exc
        if frames > 1 and img.format != "MPO":  # MPO: frame 0 is the primary JPEG
            raise _fail(
                path,
                f"holds {frames} frames/pages; only single 2-D images are "
                "supported: export one frame",
            )
        yield img


def _decode_raster(path: Path, img: Image.Image) -> np.ndarray:
    """Raw stored values: (H,W) for gray, (H,W,2|3|4) for gray+alpha or colour."""
    if img.mode not in _DIRECT_MODES and img.mode not in _CONVERT_MODES:
        raise _fail(path, f"unsupported Pillow pixel mode {img.mode!r}: save it as grayscale")
    try:
        if img.mode in _CONVERT_MODES:
            img = img.convert(_CONVERT_MODES[img.mode])
        return np.asarray(img)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError...
        raise _fail(
            path,
            f"cannot decode pixels, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})",
        ) from exc


def _raster_to_unit(path: Path, mode: str, raw: np.ndarray) -> np.ndarray:
    """Scale by the storage type's maximum so that a 12-bit-in-16 PNG keeps its true contrast."""
    if raw.ndim == 3:
        gray = raw[..., :3].astype(np.float64) @ _LUMA if raw.shape[2] >= 3 else raw[..., 0]
        return np.asarray(gray, dtype=np.float64) / 255.0
    if raw.dtype == np.bool_:
        return raw.astype(np.float64)
    if raw.dtype == np.uint8:
        return raw / 255.0
    if raw.dtype == np.uint16 or mode in _U16_MODES:
        return raw.astype(np.float64) / 65535.0
    if np.issubdtype(raw.dtype, np.integer):
        # Pillow < 10 reports 16-bit grayscale PNG as 32-bit "I"; other int data has no scale.
        lo, hi = int(raw.min()), int(raw.max())
        return raw / 65535.0 if lo >= 0 and hi <= 65535 else _min_max(raw)
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)):
            raise _fail(path, "contains NaN or infinite pixel values: re-export the image")
        inside = float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
        return raw.astype(np.float64) if inside else _min_max(raw)
    raise _fail(path, f"unsupported pixel type {raw.dtype} (Pillow mode {mode})")


def _read_raster(path: Path, max_pixels: int, min_side: int) -> np.ndarray:
    with _open_raster(path) as img:
        width, height = img.size
        _check_size(path, width, height, max_pixels, min_side)
        mode = img.mode
        raw = _decode_raster(path, img)
    return _finish(path, _raster_to_unit(path, mode, raw))


def _raster_bit_depth(mode: str) -> int:
    if mode == "1":
        return 1
    if mode in _U16_MODES:
        return 16
    if mode in ("I", "F"):
        return 32
    return 8


# ---------------------------------------------------------------- DICOM


@contextlib.contextmanager
def _dicom_errors(path: Path) -> Iterator[None]:
    """pydicom converts elements lazily, so a damaged element raises on first access, anywhere."""
    try:
        yield
    except (CxrbsError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, NotImplementedError, ...
        raise _fail(path, f"corrupt DICOM element ({type(exc).__name__}: {exc})") from exc


def _dicom_header(path: Path) -> Dataset:
    """Everything but the pixel data: enough to check size and type without decoding."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise _fail(
            path,
            "not a DICOM file (no 'DICM' marker at byte 128): the file is corrupt "
            "or not DICOM despite its suffix",
        ) from exc
    except OSError as exc:
        raise _fail(path, f"cannot read file: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a broken header
        raise _fail(path, f"corrupt DICOM header ({type(exc).__name__}: {exc})") from exc


def _dicom_geometry(path: Path, ds: Dataset) -> tuple[int, int]:
    """(width, height) of a single-frame image, refusing what this project cannot use."""
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise _fail(
            path,
            "DICOM without an image (no Rows/Columns): it may be a report, "
            "a DICOMDIR or a presentation state",
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise _fail(
            path,
            f"multi-frame DICOM ({frames} frames of {cols}x{rows}): only single "
            "2-D radiographs are supported; export one frame",
        )
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples not in (1, 3):
        raise _fail(path, f"unsupported DICOM with {samples} samples per pixel")
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise _fail(path, f"invalid Rows/Columns {rows!r}/{cols!r}: the DICOM header is corrupt")
    return int(cols), int(rows)


def _dicom_full(path: Path) -> Dataset:
    """Read the whole file, remembering whether pydicom hit the end of the file early."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001
            raise _fail(path, f"corrupt or truncated DICOM ({type(exc).__name__}: {exc})") from exc
    truncated = any("End of file" in str(w.message) for w in caught)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        why = "the file is truncated" if truncated else "nothing to read"
        raise _fail(path, f"DICOM contains no pixel data ({why})")
    return ds


def _check_decoder(path: Path, ds: Dataset) -> None:
    """Name the package to install instead of pydicom's generic 'no plugin' error."""
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not syntax:
        return
    if not syntax.is_transfer_syntax:
        raise _fail(
            path,
            f"TransferSyntaxUID {syntax} is not a DICOM transfer syntax: the file meta "
            "header is corrupt; re-export the file",
        )
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise _fail(
            path,
            f"pixel data is compressed as {syntax.name} ({syntax}), which pydicom "
            "cannot decode: convert the file to uncompressed DICOM",
        ) from exc
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies) or "a pydicom pixel decoder plugin"
        raise _fail(
            path,
            f"no decoder installed for {syntax.name} ({syntax}): install one of: "
            f"{options}",
        )


def _dicom_raw(path: Path, ds: Dataset) -> np.ndarray:
    _check_decoder(path, ds)
    try:
        return ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise ValueError, RuntimeError, ...
        raise _fail(
            path,
            f"cannot decode DICOM pixel data, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})",
        ) from exc


def _dicom_to_unit(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """Stored values -> modality values -> VOI window -> display polarity in [0,1]."""
    if raw.ndim == 3:  # colour: pydicom already converted YBR to RGB; LUTs are grayscale-only
        return _min_max(raw.astype(np.float64) @ _LUMA)
    try:
        values = apply_voi_lut(apply_modality_lut(raw, ds), ds, index=0)
    except Exception as exc:  # noqa: BLE001 - malformed LUT or window attributes
        reason = f"invalid Modality/VOI LUT attributes ({type(exc).__name__}: {exc})"
        raise _fail(path, reason) from exc
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise _fail(path, "contains NaN or infinite pixel values: re-export the image")
    unit = _min_max(values)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1 stores air bright; display wants it dark
    return unit


def _read_dicom(path: Path, max_pixels: int, min_side: int) -> np.ndarray:
    with _dicom_errors(path):
        width, height = _dicom_geometry(path, _dicom_header(path))
        _check_size(path, width, height, max_pixels, min_side)
        ds = _dicom_full(path)
        raw = _dicom_raw(path, ds)
        return _finish(path, _dicom_to_unit(path, ds, raw))


# ---------------------------------------------------------------- public readers


def read_image(
    path: PathArg, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Read a chest X-ray as float32 (H, W) in [0,1], air/lungs dark.

    PNG/JPEG/TIFF are divided by their storage maximum (255 or 65535), never stretched, so
    intensities stay comparable across a dataset; DICOM goes through its Modality and VOI LUTs
    and is then min-max scaled, since its stored values have no fixed display range.
    """
    p = _as_path(path)
    _check_limits(max_pixels, min_side)
    if _kind(p) == "raster":
        return _read_raster(p, max_pixels, min_side)
    return _read_dicom(p, max_pixels, min_side)


def image_info(path: PathArg, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Header facts plus raw stored min/max, for ``cxrbs info`` (decodes pixels once)."""
    p = _as_path(path)
    _check_limits(max_pixels, 1)
    if _kind(p) == "raster":
        with _open_raster(p) as img:
            width, height = img.size
            _check_size(p, width, height, max_pixels, 1)  # describe thumbnails too
            fmt, mode = ("JPEG" if img.format == "MPO" else str(img.format)), img.mode
            raw = _decode_raster(p, img)
        return {
            "file": _show(p),
            "format": fmt,
            "modality": "unknown",
            "width": width,
            "height": height,
            "bit_depth": _raster_bit_depth(mode),
            "photometric": "RGB" if raw.ndim == 3 else "MONOCHROME2",
            **_raw_range(raw),
            "transfer_syntax": None,
        }
    with _dicom_errors(p):
        width, height = _dicom_geometry(p, _dicom_header(p))
        _check_size(p, width, height, max_pixels, 1)
        ds = _dicom_full(p)
        raw = _dicom_raw(p, ds)
        syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
        return {
            "file": _show(p),
            "format": "DICOM",
            "modality": str(ds.get("Modality") or "unknown"),
            "width": width,
            "height": height,
            "bit_depth": int(ds.get("BitsStored") or raw.dtype.itemsize * 8),
            "photometric": str(ds.get("PhotometricInterpretation") or "unknown"),
            **_raw_range(raw),
            "transfer_syntax": str(syntax) if syntax else None,
        }


def _raw_range(raw: np.ndarray) -> dict[str, int | float]:
    """Plain Python numbers, so the info dict serialises to JSON/YAML as is."""
    as_py = int if np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_ else float
    return {"min": as_py(raw.min()), "max": as_py(raw.max())}


def list_images(folder: PathArg) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files and DICOMDIR skipped."""
    root = _as_path(folder)
    if not root.exists():
        raise _fail(root, "image folder not found: check the path in your config")
    if not root.is_dir():
        raise _fail(root, "is a file, expected a folder of images")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise _fail(root, f"cannot list folder: {exc.strerror or exc}") from exc
    found = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.upper() == "DICOMDIR" or not entry.is_file():
            continue
        suffix = entry.suffix.lower()
        if suffix in SUPPORTED_SUFFIXES or (suffix not in _NOT_DICOM and _has_dicom_marker(entry)):
            found.append(entry)
    return found


# ---------------------------------------------------------------- writers


def _to_unit_2d(path: PathArg, img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 2:
        raise _fail(path, f"cannot write an image of shape {arr.shape}: expected 2-D (H, W)")
    if not np.all(np.isfinite(arr)):
        raise _fail(path, "refusing to write an image with NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


def write_png(path: PathArg, img: np.ndarray, bits: int = 8) -> None:
    """Write a [0,1] image as 8- or 16-bit grayscale PNG (values outside [0,1] are clipped)."""
    if bits not in (8, 16):
        raise _fail(path, f"PNG bit depth must be 8 or 16, got {bits}")
    unit = _to_unit_2d(path, img)
    dtype, scale = (np.uint8, 255.0) if bits == 8 else (np.uint16, 65535.0)
    stored = np.round(unit * scale).astype(dtype)
    with atomic_path(_as_path(path)) as tmp:
        Image.fromarray(stored).save(tmp, format="PNG")


def write_dicom_derived(
    path: PathArg,
    img: np.ndarray,
    template: str | Path,
    *,
    series_description: str = "Bone suppressed (cxrbs)",
) -> None:
    """Write ``img`` as a new DICOM series of the template's patient and study.

    PACS and viewers file the result next to the original study, yet nothing in it claims to
    be the original: new series/instance UIDs, ImageType DERIVED, and no leftover window,
    rescale or spacing values that described the template's pixels.
    """
    unit = _to_unit_2d(path, img)
    stored = np.round(unit * 65535.0).astype("<u2")
    tpl_path = _as_path(template)
    _kind(tpl_path)
    with _dicom_errors(tpl_path):
        ds = _dicom_header(tpl_path)
        for _ in ds.iterall():  # parse every lazy element now: a damaged one is the template's
            pass
        old_shape = (ds.get("Rows"), ds.get("Columns"))
        source = (ds.get("SOPClassUID"), ds.get("SOPInstanceUID"))
        _drop_stale(ds)
        _rescale_spacing(ds, old_shape, stored.shape)
        _set_identity(ds, source, series_description)
        _set_pixels(ds, stored)
        ds.file_meta = _file_meta(ds)
        ds.preamble = b"\x00" * 128
    with atomic_path(_as_path(path)) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True, implicit_vr=False, little_endian=True)


def _drop_stale(ds: Dataset) -> None:
    ds.remove_private_tags()  # vendor processing parameters no longer describe these pixels
    for keyword in _STALE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in list(ds.keys()):
        if tag.group & 0xFF00 in (0x5000, 0x6000):  # curves and overlays drawn on old pixels
            del ds[tag]
        elif tag.group in (0x0000, 0x0002):  # command set / file meta: not in a data set body
            del ds[tag]


def _put(ds: Dataset, **values: Any) -> None:
    """Set elements afresh: assigning to an existing element keeps the template's VR, which in a
    damaged file can be anything (e.g. text for HighBit) and fails only inside dcmwrite."""
    for keyword, value in values.items():
        if keyword in ds:
            delattr(ds, keyword)
        setattr(ds, keyword, value)


def _rescale_spacing(
    ds: Dataset, old: tuple[int | None, int | None], new: tuple[int, ...]
) -> None:
    """Keep physical size: a 2x downsampled image has 2x the spacing between pixel centres."""
    for keyword in _SPACING_KEYWORDS:
        if keyword not in ds:
            continue
        value = ds.get(keyword)
        if not old[0] or not old[1] or value is None or len(value) != 2:
            delattr(ds, keyword)  # unknown geometry: no spacing beats a wrong one
            continue
        row_mm = float(value[0]) * old[0] / new[0]
        col_mm = float(value[1]) * old[1] / new[1]
        _put(ds, **{keyword: [format_number_as_ds(row_mm), format_number_as_ds(col_mm)]})


def _set_identity(ds: Dataset, source: tuple[Any, Any], description: str) -> None:
    sop_class = str(source[0] or "")
    if sop_class in _DX_PROCESSING:
        sop_class = sop_class[:-2]  # the processed image is "for presentation"
    if sop_class not in _DX_PRESENTATION and sop_class != _CR:
        sop_class = SecondaryCaptureImageStorage
        _put(ds, ConversionType="WSD")  # workstation: required by the Secondary Capture module
    now = datetime.datetime.now()
    date, time_ = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    _put(
        ds,
        SOPClassUID=sop_class,
        SOPInstanceUID=generate_uid(),
        SeriesInstanceUID=generate_uid(),
        ImageType=["DERIVED", "SECONDARY"],
        SeriesDescription=description,
        DerivationDescription=f"{description}; derived from the source image by cxrbs",
        InstanceNumber=1,
        InstanceCreationDate=date, SeriesDate=date, ContentDate=date,
        InstanceCreationTime=time_, SeriesTime=time_, ContentTime=time_,
    )  # fmt: skip
    if "Modality" not in ds:
        _put(ds, Modality="OT")
    if source[0] and source[1]:
        item = Dataset()
        item.ReferencedSOPClassUID = source[0]
        item.ReferencedSOPInstanceUID = source[1]
        _put(ds, SourceImageSequence=Sequence([item]))
    if sop_class in _DX_PRESENTATION:  # DX requires an explicit (here identity) rescale
        _put(ds, PresentationIntentType="FOR PRESENTATION", RescaleIntercept=0, RescaleSlope=1,
             RescaleType="US", PresentationLUTShape="IDENTITY")


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    _put(
        ds,
        SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2",
        Rows=int(stored.shape[0]),
        Columns=int(stored.shape[1]),
        BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=0,
        # A full-range linear window is the identity, so viewers show exactly what was written.
        WindowCenter=32768, WindowWidth=65536,
        PixelData=stored.tobytes(),
    )  # fmt: skip
    ds["PixelData"].VR = "OW"


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CXRBS_0_1"
    return meta
