"""DICOM through pydicom: reading to the readers' [0,1] contract, and derived-series writing.

Sizes come from the header (``stop_before_pixels``) before any pixel is decoded, so a huge or
hostile file is refused cheaply; pydicom converts elements lazily, so every access that may meet a
damaged element runs inside ``_dicom_errors``. Writing makes a new series of the template's
patient and study that never claims to be the original image.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
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
from cxrbs.data.checks import (
    LUMA,
    PathArg,
    as_path,
    check_size,
    fail,
    file_kind,
    finish,
    min_max,
    raw_range,
    show,
    to_unit_2d,
)

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
_SPACING_KEYWORDS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reading


@contextlib.contextmanager
def _dicom_errors(path: Path) -> Iterator[None]:
    """pydicom converts elements lazily, so a damaged element raises on first access, anywhere."""
    try:
        yield
    except (CxrbsError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, NotImplementedError, ...
        raise fail(path, f"corrupt DICOM element ({type(exc).__name__}: {exc})") from exc


def _dicom_header(path: Path) -> Dataset:
    """Everything but the pixel data: enough to check size and type without decoding."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise fail(
            path,
            "not a DICOM file (no 'DICM' marker at byte 128): the file is corrupt "
            "or not DICOM despite its suffix",
        ) from exc
    except OSError as exc:
        raise fail(path, f"cannot read file: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a broken header
        raise fail(path, f"corrupt DICOM header ({type(exc).__name__}: {exc})") from exc


def _dicom_geometry(path: Path, ds: Dataset) -> tuple[int, int]:
    """(width, height) of a single-frame image, refusing what this project cannot use."""
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise fail(
            path,
            "DICOM without an image (no Rows/Columns): it may be a report, "
            "a DICOMDIR or a presentation state",
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise fail(
            path,
            f"multi-frame DICOM ({frames} frames of {cols}x{rows}): only single "
            "2-D radiographs are supported; export one frame",
        )
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples not in (1, 3):
        raise fail(path, f"unsupported DICOM with {samples} samples per pixel")
    if not isinstance(rows, int) or not isinstance(cols, int):
        raise fail(path, f"invalid Rows/Columns {rows!r}/{cols!r}: the DICOM header is corrupt")
    return int(cols), int(rows)


def _dicom_full(path: Path) -> Dataset:
    """Read the whole file, remembering whether pydicom hit the end of the file early."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001
            raise fail(path, f"corrupt or truncated DICOM ({type(exc).__name__}: {exc})") from exc
    truncated = any("End of file" in str(w.message) for w in caught)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        why = "the file is truncated" if truncated else "nothing to read"
        raise fail(path, f"DICOM contains no pixel data ({why})")
    return ds


def _check_decoder(path: Path, ds: Dataset) -> None:
    """Name the package to install instead of pydicom's generic 'no plugin' error."""
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not syntax:
        return
    if not syntax.is_transfer_syntax:
        raise fail(
            path,
            f"TransferSyntaxUID {syntax} is not a DICOM transfer syntax: the file meta "
            "header is corrupt; re-export the file",
        )
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise fail(
            path,
            f"pixel data is compressed as {syntax.name} ({syntax}), which pydicom "
            "cannot decode: convert the file to uncompressed DICOM",
        ) from exc
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies) or "a pydicom pixel decoder plugin"
        raise fail(
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
        raise fail(
            path,
            f"cannot decode DICOM pixel data, the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})",
        ) from exc


def _dicom_to_unit(path: Path, ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """Stored values -> modality values -> VOI window -> display polarity in [0,1]."""
    if raw.ndim == 3:  # colour: pydicom already converted YBR to RGB; LUTs are grayscale-only
        return min_max(raw.astype(np.float64) @ LUMA)
    try:
        values = apply_voi_lut(apply_modality_lut(raw, ds), ds, index=0)
    except Exception as exc:  # noqa: BLE001 - malformed LUT or window attributes
        reason = f"invalid Modality/VOI LUT attributes ({type(exc).__name__}: {exc})"
        raise fail(path, reason) from exc
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise fail(path, "contains NaN or infinite pixel values: re-export the image")
    unit = min_max(values)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1 stores air bright; display wants it dark
    return unit


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from the first valid spacing attribute (a zero spacing, as
    some exporters write, says nothing), else None."""
    for keyword in _SPACING_KEYWORDS:
        value = _spacing_values(ds.get(keyword))
        if value is not None:
            return value
    return None


def read_dicom(path: Path, max_pixels: int, min_side: int) -> tuple[np.ndarray, dict[str, Any]]:
    """[0,1] display-polarity pixels plus the header facts that travel with them."""
    with _dicom_errors(path):
        width, height = _dicom_geometry(path, _dicom_header(path))
        check_size(path, width, height, max_pixels, min_side)
        ds = _dicom_full(path)
        raw = _dicom_raw(path, ds)
        image = finish(path, _dicom_to_unit(path, ds, raw))
        meta = {
            "source_format": "DICOM",
            "original_shape": (height, width),
            "bits": int(ds.get("BitsStored") or raw.dtype.itemsize * 8),
            "photometric": str(ds.get("PhotometricInterpretation") or "unknown"),
            "pixel_spacing": _spacing(ds),
            "modality": str(ds.get("Modality") or "unknown"),
        }
        return image, meta


def dicom_info(path: Path, max_pixels: int) -> dict[str, Any]:
    """Header facts plus raw stored min/max, for ``cxrbs info`` (decodes pixels once)."""
    with _dicom_errors(path):
        width, height = _dicom_geometry(path, _dicom_header(path))
        check_size(path, width, height, max_pixels, 1)
        ds = _dicom_full(path)
        raw = _dicom_raw(path, ds)
        syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
        return {
            "file": show(path),
            "format": "DICOM",
            "modality": str(ds.get("Modality") or "unknown"),
            "width": width,
            "height": height,
            "bit_depth": int(ds.get("BitsStored") or raw.dtype.itemsize * 8),
            "photometric": str(ds.get("PhotometricInterpretation") or "unknown"),
            **raw_range(raw),
            "transfer_syntax": str(syntax) if syntax else None,
        }


# ---------------------------------------------------------------- writing


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
    unit = to_unit_2d(path, img)
    stored = np.round(unit * 65535.0).astype("<u2")
    tpl_path = as_path(template)
    file_kind(tpl_path)
    with _dicom_errors(tpl_path):
        ds = _dicom_header(tpl_path)
        for _ in ds.iterall():  # parse every lazy element now: a damaged one is the template's
            pass
        old_shape = (ds.get("Rows"), ds.get("Columns"))
        source = (ds.get("SOPClassUID"), ds.get("SOPInstanceUID"))
        _drop_stale(ds)
        _rescale_spacing(ds, old_shape, stored.shape, tpl_path)
        _set_identity(ds, source, series_description)
        _set_pixels(ds, stored)
        ds.file_meta = _file_meta(ds)
        ds.preamble = b"\x00" * 128
    with atomic_path(as_path(path)) as tmp:
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


def _as_text(value: Any) -> str:
    """An element value as DICOM writes it (multi-values joined by a backslash)."""
    try:
        return "\\".join(str(v) for v in value) if not isinstance(value, str) else value
    except TypeError:
        return str(value)


def _put(ds: Dataset, **values: Any) -> None:
    """Set elements afresh: assigning to an existing element keeps the template's VR, which in a
    damaged file can be anything (e.g. text for HighBit) and fails only inside dcmwrite."""
    for keyword, value in values.items():
        if keyword in ds:
            delattr(ds, keyword)
        setattr(ds, keyword, value)


def _spacing_values(value: Any) -> tuple[float, float] | None:
    """(row, column) mm of a spacing element, or None where the standard forbids the value
    (spacing is a distance between pixel centres: positive and finite, two values)."""
    try:
        if value is None or len(value) != 2:
            return None
        row, col = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    return (row, col) if all(np.isfinite(v) and v > 0 for v in (row, col)) else None


def _rescale_spacing(
    ds: Dataset, old: tuple[int | None, int | None], new: tuple[int, ...], source: Path
) -> None:
    """Keep physical size: a 2x downsampled image has 2x the spacing between pixel centres.

    A value the standard forbids (zero, negative, not a number: some exporters write 0\\0) is
    not copied: the element is left out, and the log says so.
    """
    for keyword in _SPACING_KEYWORDS:
        if keyword not in ds:
            continue
        value = _spacing_values(ds.get(keyword))
        if value is None:
            log.warning("%s: %s %s is not a valid spacing (values must be > 0); left out of the "
                        "derived image", show(source), keyword, _as_text(ds.get(keyword)))
            delattr(ds, keyword)
            continue
        if not old[0] or not old[1]:
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
    if sop_class not in _DX_PRESENTATION and "PatientOrientation" not in ds:
        # Type 2 for CR and Secondary Capture (General Image module): empty says "unknown"
        _put(ds, PatientOrientation="")
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
