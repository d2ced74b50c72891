"""Fuzzing the DICOM reader: whatever the bytes, ``read_image`` returns a float32 2-D image in
[0,1] or raises CxrbsError naming the file, never another exception (a traceback for the user).
The same holds for a damaged template given to ``write_dicom_derived``.

Two harnesses: a deterministic, seeded mutation fuzz that always runs (no extra dependency), and
an atheris (libFuzzer) run when atheris is installed. Run atheris by hand for longer with
``python tests/test_fuzz_dicom.py -max_total_time=600 CORPUS_DIR``.

The regression tests at the end reproduce what the mutation fuzz found: pydicom converts
elements lazily, so a damaged header element raised ValueError/TypeError/NotImplementedError on
first access, and a TIFF with a broken page list raised TypeError, all outside any except.
"""

from __future__ import annotations

import io as pyio
import os
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import image_info, read_image, write_dicom_derived

SHARED_DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "RG1_UNCR.dcm"
N_MUTANTS = 300
FUZZ_SEED = 20211


# ----------------------------------------------------------------- seed files


def _finish(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta, ds.preamble = meta, b"\x00" * 128
    buf = pyio.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def synthetic_dicom() -> bytes:
    """A small CR image with the header features the reader uses: LUTs, polarity, a sequence."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "P001", "CR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.Rows, ds.Columns = 40, 48
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 3000, 6000
    ds.PixelSpacing = [0.2, 0.2]
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, generate_uid()
    ds.SourceImageSequence = Sequence([item])
    pixels = (np.arange(40 * 48).reshape(40, 48) * 7 % 4096).astype("<u2")
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return _finish(ds)


def vendor_dicom() -> bytes:
    """The real CR file's header (private tags, vendor sequences) with 40x48 pixels."""
    ds = pydicom.dcmread(SHARED_DICOM)
    pixels = (np.arange(40 * 48).reshape(40, 48) * 13 % 32768).astype("<u2")
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    buf = pyio.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def seed_bytes(kind: str) -> bytes:
    if kind == "vendor":
        if not SHARED_DICOM.is_file():
            pytest.skip(f"real DICOM {SHARED_DICOM} is absent")
        return vendor_dicom()
    return synthetic_dicom()


# ----------------------------------------------------------------- the mutation fuzz

_INTERESTING = [b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"UN", b"SQ",
                b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\x7f\xff\xff\xff"]


def mutate(data: bytes, rng: np.random.Generator, header_end: int) -> bytes:
    """Truncate, flip, overwrite (often with DICOM-meaningful values), insert or delete bytes;
    most edits land in the header, where the parser's decisions are."""
    b = bytearray(data)
    op = int(rng.integers(0, 5))
    if op == 0:
        return bytes(b[: int(rng.integers(0, len(b)))])
    for _ in range(int(rng.integers(1, 6))):
        hi = header_end if rng.random() < 0.85 else len(b)
        pos = int(rng.integers(0, max(hi, 1)))
        if op == 1:
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 2:
            value = _INTERESTING[int(rng.integers(0, len(_INTERESTING)))]
            b[pos : pos + len(value)] = value
        elif op == 3:
            b[pos:pos] = rng.bytes(int(rng.integers(1, 9)))
        else:
            del b[pos : pos + int(rng.integers(1, 9))]
    return bytes(b)


def check_one(path: Path, reader: str) -> str:
    """'ok' or 'refused'; anything else raises."""
    try:
        if reader == "info":
            info = image_info(path)
            assert info["width"] >= 1 and info["height"] >= 1
            return "ok"
        img = read_image(path)
    except CxrbsError as exc:
        message = str(exc)
        message.encode("utf-8")
        assert path.name in message, message
        return "refused"
    assert isinstance(img, np.ndarray) and img.dtype == np.float32 and img.ndim == 2
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
    return "ok"


@pytest.mark.parametrize("kind", ["synthetic", "vendor"])
def test_mutated_dicom_is_read_or_refused_cleanly(kind: str, tmp_path: Path) -> None:
    data = seed_bytes(kind)
    header_end = len(data) - 40 * 48 * 2
    path = tmp_path / "mutant.dcm"
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd element it meets
        for i in range(N_MUTANTS):
            mutant = mutate(data, np.random.default_rng([FUZZ_SEED, i]), header_end)
            path.write_bytes(mutant)
            reader = "info" if i % 4 == 3 else "read"
            try:
                outcomes[check_one(path, reader)] += 1
            except Exception as exc:  # noqa: BLE001 - collect them all, then fail once
                (tmp_path / f"crash_{i}.dcm").write_bytes(mutant)
                crashes.append(f"mutant {i} ({reader}): {type(exc).__name__}: {exc}"[:300])
    assert not crashes, f"{len(crashes)} mutants escaped as non-CxrbsError:\n" + "\n".join(
        crashes[:10])
    # Not vacuous: the mutations both break files and leave some readable.
    assert outcomes["refused"] >= N_MUTANTS // 10 and outcomes["ok"] >= N_MUTANTS // 20, outcomes
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize("kind", ["synthetic", "vendor"])
def test_mutated_template_for_derived_dicom(kind: str, tmp_path: Path) -> None:
    """`cxrbs suppress --format dicom` copies the input's header: a damaged one must be named."""
    data = seed_bytes(kind)
    header_end = len(data) - 40 * 48 * 2
    template, out = tmp_path / "template.dcm", tmp_path / "out" / "bs.dcm"
    img = np.linspace(0.0, 1.0, 40 * 40).reshape(40, 40)
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(N_MUTANTS // 2):
            template.write_bytes(mutate(data, np.random.default_rng([FUZZ_SEED + 1, i]),
                                        header_end))
            try:
                write_dicom_derived(out, img, template)
            except CxrbsError as exc:
                assert template.name in str(exc), str(exc)
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001
                crashes.append(f"mutant {i}: {type(exc).__name__}: {exc}"[:300])
                continue
            np.testing.assert_allclose(read_image(out), img, atol=1 / 65535)
            outcomes["ok"] += 1
    assert not crashes, "\n".join(crashes[:10])
    assert outcomes["refused"] >= 10 and outcomes["ok"] >= 10, outcomes
    assert not list(out.parent.glob(".*tmp*"))


# ----------------------------------------------------------------- atheris (libFuzzer)


def _atheris_main() -> None:
    """libFuzzer entry point: ``python tests/test_fuzz_dicom.py [libFuzzer flags] [CORPUS]``."""
    import atheris

    with atheris.instrument_imports():
        import cxrbs.data.io as cio
        from cxrbs.core.errors import CxrbsError as Refused

    warnings.simplefilter("ignore")
    fd, name = tempfile.mkstemp(suffix=".dcm")
    os.close(fd)
    target = Path(name)

    def one_input(data: bytes) -> None:
        target.write_bytes(data)
        try:
            img = cio.read_image(target)
        except Refused:
            return
        if img.dtype != np.float32 or img.ndim != 2 or not (0.0 <= img.min() <= img.max() <= 1.0):
            raise AssertionError(f"bad image: {img.dtype} {img.shape}")

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def test_atheris_dicom_reader(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "synthetic.dcm").write_bytes(synthetic_dicom())
    if SHARED_DICOM.is_file():
        (corpus / "vendor.dcm").write_bytes(vendor_dicom())
    proc = subprocess.run(
        [sys.executable, __file__, "-runs=4000", "-max_total_time=12", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


# ----------------------------------------------------------------- what the fuzz found


def patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def expect_refusal(tmp_path: Path, data: bytes, fragment: str, name: str = "bad.dcm") -> None:
    path = tmp_path / name
    path.write_bytes(data)
    for reader in (read_image, image_info):
        with pytest.raises(CxrbsError) as info:
            reader(path)
        assert name in str(info.value) and fragment in str(info.value), str(info.value)


def test_transfer_syntax_that_is_not_one(tmp_path: Path) -> None:
    data = patched(synthetic_dicom(), b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.7\x00")
    expect_refusal(tmp_path, data, "not a DICOM transfer syntax")


def test_unknown_value_representation(tmp_path: Path) -> None:
    # (0028,0011) Columns, explicit VR "US" -> "U\xff"
    data = patched(synthetic_dicom(), b"\x28\x00\x11\x00US", b"\x28\x00\x11\x00U\xff")
    expect_refusal(tmp_path, data, "corrupt DICOM element")


def test_odd_length_numeric_element(tmp_path: Path) -> None:
    # (0028,0010) Rows: a 3-byte US value cannot be parsed as 16-bit numbers.
    data = patched(synthetic_dicom(), b"\x28\x00\x10\x00US\x02\x00\x28\x00",
                   b"\x28\x00\x10\x00US\x03\x00\x28\x00\x00")
    expect_refusal(tmp_path, data, "corrupt DICOM element")


def test_rows_with_two_values(tmp_path: Path) -> None:
    data = patched(synthetic_dicom(), b"\x28\x00\x10\x00US\x02\x00\x28\x00",
                   b"\x28\x00\x10\x00US\x04\x00\x28\x00\x28\x00")
    expect_refusal(tmp_path, data, "invalid Rows/Columns")


def test_tiff_with_broken_page_list(tmp_path: Path) -> None:
    """Page 1 opens; the pointer to page 2 lands on zeros, an IFD without dimensions."""
    buf = pyio.BytesIO()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    (first,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[first : first + 2])
    next_ptr = first + 2 + 12 * entries
    assert data[next_ptr : next_ptr + 4] == b"\x00\x00\x00\x00"
    zeros_at = len(data) - 64 - (len(data) % 2)  # inside the all-zero pixel data
    data[next_ptr : next_ptr + 4] = struct.pack("<I", zeros_at)
    expect_refusal(tmp_path, bytes(data), "corrupt image", name="pages.tif")


if __name__ == "__main__":
    _atheris_main()
