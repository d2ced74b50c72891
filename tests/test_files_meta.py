"""The one file walker, reading with metadata (imageio for PNG/JPEG/TIFF), and the stack reader."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrbs.core.errors import CxrbsError
from cxrbs.data.files import IMAGE_SUFFIXES, walk_files, walk_images
from cxrbs.data.io import SUPPORTED_SUFFIXES, list_images, read_image, read_image_with_meta
from cxrbs.data.io import write_png
from cxrbs.data.preprocess import from_uint16
from cxrbs.data.stacks import read_stack


def dicom(path: Path, pixels: np.ndarray, **attrs: object) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta, ds.preamble = meta, b"\x00" * 128
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_one_suffix_list() -> None:
    assert SUPPORTED_SUFFIXES == IMAGE_SUFFIXES


def test_png_metadata_and_values(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, 48 * 40).reshape(48, 40)
    write_png(tmp_path / "a16.png", ramp, bits=16)
    img, meta = read_image_with_meta(tmp_path / "a16.png")
    assert meta == {"source_format": "PNG", "original_shape": (48, 40), "bits": 16,
                    "photometric": "MONOCHROME2", "pixel_spacing": None, "modality": "unknown"}
    assert np.array_equal(img, read_image(tmp_path / "a16.png"))
    assert np.array_equal(img, (np.round(ramp * 65535) / 65535).astype(np.float32))
    rgb = (np.random.default_rng(0).random((40, 44, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    img, meta = read_image_with_meta(tmp_path / "c.jpg")
    assert (meta["source_format"], meta["photometric"], meta["bits"]) == ("JPEG", "RGB", 8)
    decoded = np.asarray(Image.open(tmp_path / "c.jpg")).astype(np.float64)
    expected = (decoded @ np.array([0.299, 0.587, 0.114])) / 255.0
    assert np.array_equal(img, np.clip(expected, 0, 1).astype(np.float32))


def test_png_writer_bytes_equal_pillow(tmp_path: Path) -> None:
    """imageio writes through Pillow: the same file, byte for byte, as Pillow alone."""
    ramp = np.linspace(0, 1, 40 * 40).reshape(40, 40)
    for bits, dtype, scale in ((8, np.uint8, 255.0), (16, np.uint16, 65535.0)):
        write_png(tmp_path / f"io{bits}.png", ramp, bits=bits)
        Image.fromarray(np.round(ramp * scale).astype(dtype)).save(tmp_path / f"pil{bits}.png")
        assert (tmp_path / f"io{bits}.png").read_bytes() == (tmp_path / f"pil{bits}.png").read_bytes()
        assert iio.improps(tmp_path / f"io{bits}.png", plugin="pillow").dtype == np.dtype(dtype)


def test_dicom_metadata(tmp_path: Path) -> None:
    pixels = (np.arange(40 * 36).reshape(40, 36) % 4096).astype(np.uint16)
    path = dicom(tmp_path / "x.dcm", pixels, PixelSpacing=["0.143", "0.15"],
                 PhotometricInterpretation="MONOCHROME1")
    img, meta = read_image_with_meta(path)
    assert meta == {"source_format": "DICOM", "original_shape": (40, 36), "bits": 12,
                    "photometric": "MONOCHROME1", "pixel_spacing": (0.143, 0.15),
                    "modality": "CR"}
    assert img[0, 0] == 1.0  # stored 0 is brightest in MONOCHROME1: shown inverted
    _, meta = read_image_with_meta(dicom(tmp_path / "y.dcm", pixels, ImagerPixelSpacing=[0.2, 0.2]))
    assert meta["pixel_spacing"] == (0.2, 0.2) and meta["photometric"] == "MONOCHROME2"


def test_walker_skips_what_is_not_an_image(tmp_path: Path) -> None:
    write_png(tmp_path / "b.png", np.zeros((40, 40)))
    write_png(tmp_path / "A.PNG", np.zeros((40, 40)))
    write_png(tmp_path / ".hidden.png", np.zeros((40, 40)))
    write_png(tmp_path / ".cache" / "c.png", np.zeros((40, 40)))
    write_png(tmp_path / "masks" / "m.png", np.zeros((40, 40)))
    write_png(tmp_path / "sub" / "d.png", np.zeros((40, 40)))
    dicom(tmp_path / "1.2.840.99", np.zeros((40, 40), np.uint16))  # UID name, no suffix
    dicom(tmp_path / "DICOMDIR", np.zeros((40, 40), np.uint16))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "Thumbs.db").write_bytes(b"\x00" * 200)
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever
    (tmp_path / "loop").symlink_to(tmp_path)  # a link loop is not followed
    (tmp_path / "broken.png").symlink_to(tmp_path / "nowhere.png")

    names = [p.relative_to(tmp_path).as_posix() for p in walk_images(tmp_path)]
    assert names == ["1.2.840.99", "A.PNG", "b.png", "masks/m.png", "sub/d.png"]
    assert [p.name for p in walk_images(tmp_path, exclude_dirs=["MASKS"], recursive=False)] == [
        "1.2.840.99", "A.PNG", "b.png"]
    assert [p.name for p in list_images(tmp_path)] == ["1.2.840.99", "A.PNG", "b.png"]
    assert [p.name for p in walk_images(tmp_path, sniff_dicom=False, recursive=False)] == [
        "A.PNG", "b.png"]
    assert "notes.txt" in [p.name for p in walk_files(tmp_path)]
    assert [p.name for p in walk_images(tmp_path, exclude=[tmp_path / "sub"])][-1] == "m.png"


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_read_stack_converts_by_dtype(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(1)
    if dtype is np.uint16:
        stored = rng.integers(0, 65536, size=(3, 2, 8, 8)).astype(np.uint16)
        expected = from_uint16(stored)
    else:
        stored = rng.random((3, 2, 8, 8)).astype(np.float32)
        expected = stored
    np.save(tmp_path / "s.npy", stored)
    out = read_stack(tmp_path / "s.npy")
    assert out.dtype == np.float32 and np.array_equal(out, expected)


def test_read_stack_refuses_other_dtypes(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((1, 1, 4, 4), np.float64))
    with pytest.raises(CxrbsError, match="expected a uint16 prepared stack or float32"):
        read_stack(tmp_path / "s.npy")
