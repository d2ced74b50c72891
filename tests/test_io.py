"""Tests for cxrbs.data.io: real DICOM/PNG decoding, round trips, and every refusal path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from cxrbs.data import dicom, io
from cxrbs.core.errors import CxrbsError

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


# ---------------------------------------------------------------- helpers


def make_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    implicit: bool = False,
    sop_class: str = CR_STORAGE,
    **attrs: object,
) -> Path:
    """A minimal but valid single- or multi-frame DICOM written by pydicom itself."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.PatientName, ds.PatientID = "Doe^Jane", "P001"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyID, ds.AccessionNumber = "20200101", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CR"
    if pixels is not None:
        arr = np.ascontiguousarray(pixels, dtype="<u2")
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.Rows, ds.Columns = arr.shape[-2:]
        if arr.ndim == 3:
            ds.NumberOfFrames = arr.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
    for key, value in attrs.items():
        setattr(ds, key, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def ramp(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Random [0,1] image with exact 0 and 1 present, so min-max scaling is the identity."""
    img = np.random.default_rng(seed).random(shape)
    img.flat[0], img.flat[-1] = 0.0, 1.0
    return img


def png_bytes(tmp_path: Path) -> bytes:
    src = tmp_path / "valid_src.png"
    Image.fromarray((ramp((64, 64), 1) * 255).astype(np.uint8)).save(src)
    return src.read_bytes()


def expect_error(path: Path | bytes, match_name: str, **kwargs: object) -> str:
    with pytest.raises(CxrbsError) as info:
        io.read_image(path, **kwargs)
    message = str(info.value)
    message.encode("utf-8")  # must be printable on a UTF-8 terminal
    assert match_name in message
    return message


# ---------------------------------------------------------------- real data


@pytest.mark.shared
def test_real_dicom_uncompressed_and_jpeg2000_agree(shared_data: Path) -> None:
    unc = shared_data / "dicom" / "RG1_UNCR.dcm"
    j2k = shared_data / "dicom" / "RG1_J2KR.dcm"
    header = pydicom.dcmread(unc, stop_before_pixels=True)
    a, b = io.read_image(unc), io.read_image(j2k)
    assert a.shape == (header.Rows, header.Columns) == (1955, 1841)
    assert a.dtype == np.float32 and a.min() == 0.0 and a.max() == 1.0
    assert np.array_equal(a, b)  # lossless JPEG 2000: identical after the same LUTs
    # Independent expectation: the window (15000/30000) spans all stored values, so display is
    # just the MONOCHROME1 inversion of the raw values, min-max scaled.
    raw = pydicom.dcmread(unc).pixel_array.astype(np.float64)
    expected = (raw.max() - raw) / (raw.max() - raw.min())
    np.testing.assert_allclose(a, expected, atol=1e-6)


@pytest.mark.shared
def test_real_dicom_lungs_are_dark(shared_data: Path) -> None:
    img = io.read_image(shared_data / "dicom" / "RG1_UNCR.dcm")
    h, w = img.shape

    def region(r0: float, r1: float, c0: float, c1: float) -> float:
        return float(img[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())

    right_lung, left_lung = region(0.17, 0.5, 0.13, 0.37), region(0.17, 0.5, 0.63, 0.87)
    mediastinum = region(0.17, 0.8, 0.45, 0.55)  # spine + heart: bright in display polarity
    # Measured: lungs ~0.57-0.58, mediastinum ~0.88; without inversion the order flips.
    assert right_lung < mediastinum - 0.15
    assert left_lung < mediastinum - 0.15


@pytest.mark.shared
def test_real_dicom_info(shared_data: Path) -> None:
    path = shared_data / "dicom" / "RG1_UNCR.dcm"
    raw = pydicom.dcmread(path).pixel_array
    info = io.image_info(path)
    assert info["format"] == "DICOM" and info["modality"] == "CR"
    assert info["photometric"] == "MONOCHROME1" and info["bit_depth"] == 15
    assert (info["width"], info["height"]) == (1841, 1955)
    assert (info["min"], info["max"]) == (int(raw.min()), int(raw.max()))
    assert info["transfer_syntax"] == "1.2.840.10008.1.2.1"
    j2k = io.image_info(shared_data / "dicom" / "RG1_J2KR.dcm")
    assert j2k["transfer_syntax"] == "1.2.840.10008.1.2.4.90"


@pytest.mark.shared
def test_real_png(shared_data: Path) -> None:
    path = sorted((shared_data / "bse-jsrt" / "source").glob("*.png"))[0]
    img = io.read_image(path)
    assert img.shape == (512, 512) and img.dtype == np.float32
    assert 0.0 <= img.min() < img.max() <= 1.0
    np.testing.assert_allclose(img, np.asarray(Image.open(path).convert("L")) / 255.0, atol=1e-7)
    info = io.image_info(path)
    assert (info["format"], info["bit_depth"], info["photometric"]) == ("PNG", 8, "MONOCHROME2")


# ---------------------------------------------------------------- generated fixtures


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip(tmp_path: Path, bits: int) -> None:
    img = ramp((40, 56), seed=bits)
    path = tmp_path / f"r{bits}.png"
    io.write_png(path, img, bits=bits)
    assert Image.open(path).mode == ("L" if bits == 8 else "I;16")
    back = io.read_image(path)
    assert back.shape == (40, 56)
    assert np.abs(back - img).max() <= 0.5 / (2**bits - 1) + 1e-7
    assert io.image_info(path)["bit_depth"] == bits
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_write_png_clips_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "clip.png"
    io.write_png(path, np.array([[-0.5, 2.0]] * 40).repeat(20, axis=1))
    stored = np.asarray(Image.open(path))
    assert stored[:, :20].max() == 0 and stored[:, 20:].min() == 255
    with pytest.raises(CxrbsError, match="nan.png"):
        io.write_png(tmp_path / "nan.png", np.full((40, 40), np.nan))
    with pytest.raises(CxrbsError, match="bits.png"):
        io.write_png(tmp_path / "bits.png", np.zeros((40, 40)), bits=12)


def test_12_bit_png_is_not_stretched(tmp_path: Path) -> None:
    stored = (ramp((48, 48), 3) * 4095).astype(np.uint16)
    path = tmp_path / "twelve.png"
    Image.fromarray(stored).save(path)
    img = io.read_image(path)
    assert img.max() == pytest.approx(4095 / 65535)
    np.testing.assert_allclose(img, stored / 65535.0, atol=1e-7)


def test_rgb_and_rgba_collapse_to_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:20] = (255, 0, 0)
    rgb[20:] = (90, 90, 90)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    img = io.read_image(tmp_path / "rgb.png")
    assert img.shape == (40, 40)
    assert img[0, 0] == pytest.approx(0.299, abs=1e-6)  # BT.601 weight of red
    assert img[-1, -1] == pytest.approx(90 / 255, abs=1e-6)  # gray stays gray
    rgba = np.dstack([rgb, np.full((40, 40), 7, np.uint8)])  # alpha must be ignored
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(io.read_image(tmp_path / "rgba.png"), img, atol=1e-7)
    assert io.image_info(tmp_path / "rgb.png")["photometric"] == "RGB"
    Image.fromarray(rgb).quantize(colors=4).save(tmp_path / "palette.png")  # mode "P"
    np.testing.assert_allclose(io.read_image(tmp_path / "palette.png"), img, atol=1e-6)


def test_tiff_16_bit_and_jpeg(tmp_path: Path) -> None:
    stored = (ramp((36, 44), 4) * 65535).astype(np.uint16)
    Image.fromarray(stored).save(tmp_path / "x.tif")
    np.testing.assert_allclose(io.read_image(tmp_path / "x.tif"), stored / 65535.0, atol=1e-7)
    assert io.image_info(tmp_path / "x.tif")["format"] == "TIFF"
    gray = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))
    Image.fromarray(gray).save(tmp_path / "x.JPEG", quality=95)
    jpg = io.read_image(tmp_path / "x.JPEG")
    assert jpg.shape == (40, 48) and np.abs(jpg - gray / 255.0).mean() < 0.02


def test_synthetic_monochrome1_with_rescale(tmp_path: Path) -> None:
    stored = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (40, 1))  # 40x40, dark..bright
    path = make_dicom(
        tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-9
    )
    img = io.read_image(path)
    expected = 1.0 - stored / 3900.0  # rescale is affine, then invert + min-max
    np.testing.assert_allclose(img, expected, atol=1e-6)
    m2 = io.read_image(make_dicom(tmp_path / "m2.dcm", stored))
    np.testing.assert_allclose(m2, 1.0 - img, atol=1e-6)


def test_dicom_window_is_applied(tmp_path: Path) -> None:
    stored = np.tile(np.arange(0, 4000, 100, dtype=np.uint16), (40, 1))
    path = make_dicom(tmp_path / "w.dcm", stored, WindowCenter=2000, WindowWidth=1000)
    img = io.read_image(path)
    assert img[0, stored[0] <= 1400].max() == 0.0  # below the window: black
    assert img[0, stored[0] >= 2600].min() == 1.0  # above the window: white
    inside = (stored[0] > 1600) & (stored[0] < 2400)
    assert np.all(np.diff(img[0, inside]) > 0)


def test_suffixless_dicom_is_read(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "1.2.840.99", np.full((40, 40), 5, np.uint16))
    assert io.read_image(path).shape == (40, 40)
    assert io.image_info(path)["format"] == "DICOM"


# ---------------------------------------------------------------- refusals


def test_missing_and_empty_files(tmp_path: Path) -> None:
    expect_error(tmp_path / "absent.png", "absent.png")
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in expect_error(tmp_path / "empty.png", "empty.png")
    (tmp_path / "empty.dcm").write_bytes(b"")
    expect_error(tmp_path / "empty.dcm", "empty.dcm")


def test_truncated_png(tmp_path: Path) -> None:
    data = png_bytes(tmp_path)
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert "truncated" in expect_error(tmp_path / "half.png", "half.png")


def test_truncated_dicom(tmp_path: Path) -> None:
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "RG1_UNCR.dcm"
    if real.is_file():
        source = real
    else:  # no shared data: cut a DICOM of our own
        source = make_dicom(tmp_path / "full.dcm", (ramp((64, 64), 5) * 4095).astype(np.uint16))
    data = source.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: int(len(data) * 0.6)])
    expect_error(tmp_path / "cut.dcm", "cut.dcm")


@pytest.mark.parametrize("name", ["noise.png", "noise.dcm", "noise.jpg", "noise.tif"])
def test_random_bytes_with_image_suffix(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(np.random.default_rng(7).bytes(4096))
    expect_error(tmp_path / name, name)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    no_image = make_dicom(tmp_path / "report.dcm", None)
    expect_error(no_image, "report.dcm")
    # Has Rows/Columns but the pixel element itself is missing.
    header_only = make_dicom(tmp_path / "nopix.dcm", None, Rows=64, Columns=64, BitsAllocated=16)
    assert "no pixel data" in expect_error(header_only, "nopix.dcm")


def test_multiframe_dicom_is_refused(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "cine.dcm", np.zeros((3, 40, 40), np.uint16))
    assert "multi-frame" in expect_error(path, "cine.dcm")


def test_missing_decoder_names_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_dicom(tmp_path / "j2k.dcm", np.zeros((40, 40), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # claim JPEG 2000
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 16])
    ds.save_as(path, enforce_file_format=True)

    class NoDecoder:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0"]

    monkeypatch.setattr(dicom, "get_decoder", lambda uid: NoDecoder())
    message = expect_error(path, "j2k.dcm")
    assert "pylibjpeg-openjpeg" in message and "JPEG 2000" in message


def test_tiny_image_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "dot.png")
    assert "smaller than" in expect_error(tmp_path / "dot.png", "dot.png")
    assert io.image_info(tmp_path / "dot.png")["width"] == 1  # info still describes it


def test_huge_png_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(tmp_path / "big.png")
    calls: list[int] = []
    original = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile) -> object:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    message = expect_error(tmp_path / "big.png", "big.png", max_pixels=1000)
    assert "200x200" in message and "max_image_pixels" in message
    assert calls == []  # only the header was parsed
    io.read_image(tmp_path / "big.png")  # the counter does see a real decode
    assert calls


def test_huge_dicom_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_dicom(tmp_path / "big.dcm", np.zeros((200, 200), np.uint16))

    def no_decode(self: Dataset) -> np.ndarray:
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(Dataset, "pixel_array", property(no_decode))
    message = expect_error(path, "big.dcm", max_pixels=1000)
    assert "max_image_pixels" in message


@pytest.mark.parametrize("name", ["scan.bmp", "notes.txt", "noext"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / name, format="BMP")
    assert "unsupported" in expect_error(tmp_path / name, name)


def test_float_tiff_with_nan_is_refused(tmp_path: Path) -> None:
    arr = np.zeros((40, 40), np.float32)
    arr[3, 3] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    assert "NaN" in expect_error(tmp_path / "nan.tif", "nan.tif")


def test_non_utf8_file_name(tmp_path: Path) -> None:
    raw_name = os.path.join(os.fsencode(tmp_path), b"bad\xff.png")
    try:
        with open(raw_name, "wb") as fh:
            fh.write(np.random.default_rng(3).bytes(512))
    except OSError as exc:  # some filesystems reject non-UTF-8 names outright
        pytest.skip(f"filesystem refuses non-UTF-8 names: {exc}")
    for path in (raw_name, os.fsdecode(raw_name), Path(os.fsdecode(raw_name))):
        message = expect_error(path, "bad\\xff.png")
        print(message)  # pytest captures stdout as UTF-8: must not raise


# ---------------------------------------------------------------- folders


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.dcm", "c.tiff", ".hidden.png", "notes.txt", "d.jpeg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    make_dicom(tmp_path / "IM0001", np.zeros((40, 40), np.uint16))
    names = [p.name for p in io.list_images(tmp_path)]
    assert names == ["IM0001", "a.dcm", "b.PNG", "c.tiff", "d.jpeg"]
    with pytest.raises(CxrbsError, match="nowhere"):
        io.list_images(tmp_path / "nowhere")
    with pytest.raises(CxrbsError, match="notes.txt"):
        io.list_images(tmp_path / "notes.txt")


# ---------------------------------------------------------------- derived DICOM


def check_derived(out: Path, template: Path, img: np.ndarray) -> Dataset:
    src = pydicom.dcmread(template, stop_before_pixels=True)
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        assert ds.get(key) == src.get(key), key
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID != src.SOPInstanceUID
    assert "DERIVED" in ds.ImageType
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation) == (*img.shape, "MONOCHROME2")
    assert np.abs(ds.pixel_array / 65535.0 - np.clip(img, 0, 1)).max() <= 0.5 / 65535 + 1e-9
    # The reader shows exactly what was written (image spans 0..1, so min-max is identity).
    np.testing.assert_allclose(io.read_image(out), np.clip(img, 0, 1), atol=1e-4)
    return ds


@pytest.mark.shared
def test_write_dicom_derived_from_real_template(shared_data: Path, tmp_path: Path) -> None:
    template = shared_data / "dicom" / "RG1_UNCR.dcm"
    img = ramp((64, 60), 11)
    out = tmp_path / "bs.dcm"
    io.write_dicom_derived(out, img, template, series_description="BS test")
    ds = check_derived(out, template, img)
    assert ds.SeriesDescription == "BS test" and ds.SOPClassUID == CR_STORAGE


def test_write_dicom_derived_from_synthetic_template(tmp_path: Path) -> None:
    stored = (ramp((80, 64), 12) * 4095).astype(np.uint16)
    template = make_dicom(
        tmp_path / "tpl.dcm",
        stored,
        photometric="MONOCHROME1",
        implicit=True,  # the writer must re-encode as Explicit VR
        sop_class=DX_PROCESSING,
        PixelSpacing=[0.2, 0.1],
        ImagerPixelSpacing=[0.2, 0.1],
        WindowCenter=2000,
        WindowWidth=4000,
        RescaleSlope=2,
        RescaleIntercept=0,
        VOILUTFunction="SIGMOID",
        SeriesDescription="PA",
    )
    tpl = pydicom.dcmread(template)
    tpl.add_new(0x00290010, "LO", "VENDOR")  # a private block that must not survive
    tpl.add_new(0x00291001, "LO", "secret processing")
    tpl.save_as(template)
    img = ramp((40, 32), 13) * 1.2 - 0.1  # outside [0,1]: clipped on write
    out = tmp_path / "out" / "bs.dcm"
    io.write_dicom_derived(out, img, template)
    ds = check_derived(out, template, img)
    assert ds.SeriesDescription == "Bone suppressed (cxrbs)"
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.4, 0.2])  # 2x downsampled
    assert [float(v) for v in ds.ImagerPixelSpacing] == pytest.approx([0.4, 0.2])
    assert ds.SOPClassUID == DX_PROCESSING[:-2]  # now "for presentation"
    assert "VOILUTFunction" not in ds and float(ds.RescaleSlope) == 1.0
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (32768.0, 65536.0)
    assert not any(elem.tag.is_private for elem in ds)
    assert not list(out.parent.glob(".*tmp*"))


def test_write_dicom_derived_bad_template(tmp_path: Path) -> None:
    (tmp_path / "tpl.dcm").write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(CxrbsError, match="tpl.dcm"):
        io.write_dicom_derived(tmp_path / "o.dcm", np.zeros((40, 40)), tmp_path / "tpl.dcm")
    assert not (tmp_path / "o.dcm").exists()
