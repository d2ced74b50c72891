"""Bad input fed to the pipeline's entry points: the CLI (`cxrbs info`, `cxrbs suppress`) and the
workflow's data stage (manifest + preprocessed stack), not just the readers (see test_io.py).

Every case must end in one CxrbsError (or one `cxrbs: error:` line) naming the file or key, and
must leave an existing ``results/`` tree byte-for-byte as it was: a failed run may not clobber
the outputs of an earlier good one. 16-bit and RGB images are not bad input: they must work.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrbs import cli
from cxrbs.core import atomic
from cxrbs.data.stacks import build_stack, load_stack
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import read_image
from cxrbs.data.manifests import build_manifest
from cxrbs.models import create_model
from cxrbs.data.preprocess import PAIR_MODES, preprocess, preprocess_pair
from cxrbs.bs.train import TrainConfig

SHARED_DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "RG1_UNCR.dcm"
CXRBS = [sys.executable, "-c", "import sys; from cxrbs.cli import main; sys.exit(main())"]
MODEL_SIZE = 32


# ----------------------------------------------------------------- input files


def gradient(h: int, w: int) -> np.ndarray:
    return np.add.outer(np.arange(h), np.arange(w)) / (h + w - 2)


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def small_png(path: Path, h: int = 64, w: int = 64) -> Path:
    return save_png(path, (gradient(h, w) * 255).astype(np.uint8))


def make_dicom(path: Path, pixels: np.ndarray | None, **attrs: object) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.PatientID, ds.Modality = "P1", "CR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if pixels is not None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
        ds["PixelData"].VR = "OW"
    for key, value in attrs.items():
        setattr(ds, key, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta, ds.preamble = meta, b"\x00" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_truncated_png(path: Path) -> None:
    data = small_png(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_truncated_dicom(path: Path) -> None:
    if SHARED_DICOM.is_file():  # a real CR file, cut inside its pixel data
        data = SHARED_DICOM.read_bytes()
    else:
        data = make_dicom(path, (gradient(64, 64) * 4095).astype(np.uint16)).read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


def write_huge_png(path: Path) -> None:
    """10000x10000, 1 bit per pixel, all black: ~12 kB on disk, 100 MB once decoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (10_000, 10_000)).save(path)


# case -> (file name, how to write it, what the message must also say)
BAD: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "empty": ("case.png", lambda p: p.write_bytes(b""), "empty"),
    "truncated_png": ("case.png", write_truncated_png, "truncated"),
    "truncated_dicom": ("case.dcm", write_truncated_dicom, "truncated"),
    "random_png": ("case.png", lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096)),
                   "not a readable PNG"),
    "random_dcm": ("case.dcm", lambda p: p.write_bytes(np.random.default_rng(2).bytes(4096)),
                   "not a DICOM file"),
    "dicom_no_pixels": ("case.dcm", lambda p: make_dicom(p, None, Rows=64, Columns=64,
                                                         BitsAllocated=16), "no pixel data"),
    "one_pixel": ("case.png", lambda p: save_png(p, np.zeros((1, 1), np.uint8)), "smaller than"),
    "huge": ("case.png", write_huge_png, "above the limit"),
}


def write_case(folder: Path, case: str) -> Path:
    name, write, _ = BAD[case]
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    return path


@pytest.fixture(scope="module")
def good_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    """A 16-bit and an RGB PNG, with the [0,1] image each must read as."""
    folder = tmp_path_factory.mktemp("good")
    g16 = (gradient(64, 48) * 65535).astype(np.uint16)
    rgb = np.stack([(gradient(64, 48) * 255).astype(np.uint8)] * 3, axis=-1)
    rgb[..., 0] = 255 - rgb[..., 0]  # a real colour image, not gray stored as RGB
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    return {
        "png16": (save_png(folder / "case16.png", g16), g16 / 65535),
        "rgb": (save_png(folder / "casergb.png", rgb), luma),
    }


# ----------------------------------------------------------------- the results/ tree


def digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too) with its content hash."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in dirnames:
            out[str((here / d).relative_to(root)) + "/"] = "dir"
        for f in filenames:
            out[str((here / f).relative_to(root))] = hashlib.sha256(
                (here / f).read_bytes()).hexdigest()
    return out


@pytest.fixture
def results(tmp_path: Path) -> Iterator[Path]:
    """A results/ tree from an earlier good run; it must come out of every test unchanged."""
    root = tmp_path / "results"
    data = root / "data" / "pairs"
    data.mkdir(parents=True)
    np.save(data / "images.npy", np.full((2, 2, 8, 8), 1234, np.uint16))
    (data / "manifest.csv").write_text("index,image_path,patient_id\n0,a.png,a\n1,b.png,b\n")
    (root / "bs" / "resnet_bs").mkdir(parents=True)
    (root / "bs" / "resnet_bs" / "best.pt").write_bytes(b"earlier checkpoint")
    small_png(root / "suppressed" / "case_bs.png", 40, 40)  # what suppressing case.png makes
    before = digest(root)
    yield root
    assert digest(root) == before, "results/ was changed by a failed run"


# ----------------------------------------------------------------- cxrbs info


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("case", sorted(BAD))
def test_info_names_the_bad_file(
    case: str, tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_case(tmp_path / "in", case)
    rc, out, err = run_cli(capsys, "info", str(path))
    if case == "one_pixel":  # info describes thumbnails: it is a reader's refusal, not info's
        assert rc == 0 and "1 x 1 pixels" in out
        return
    lines = err.strip().splitlines()
    assert rc == cli.EXIT_USER_ERROR
    assert len(lines) == 1 and lines[0].startswith(f"cxrbs: error: {path}: "), err
    assert BAD[case][2] in lines[0]


def test_info_reads_16_bit_and_rgb(
    good_inputs: dict[str, tuple[Path, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [str(good_inputs[k][0]) for k in ("png16", "rgb")]
    rc, out, err = run_cli(capsys, "info", *paths)
    assert rc == 0, err
    assert "bit depth:            16" in out and "stored value range:   0 .. 65535" in out
    assert "photometric:          RGB" in out


@pytest.mark.parametrize("key", ["png16", "rgb"])
def test_readers_take_16_bit_and_rgb(
    key: str, good_inputs: dict[str, tuple[Path, np.ndarray]]
) -> None:
    path, expected = good_inputs[key]
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == (64, 48)
    np.testing.assert_allclose(img, expected, atol=1e-6)


def test_one_info_line_per_bad_file_and_good_ones_still_described(
    tmp_path: Path, good_inputs: dict[str, tuple[Path, np.ndarray]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = [write_case(tmp_path / case, case) for case in ("empty", "random_dcm", "huge")]
    good = str(good_inputs["png16"][0])
    rc, out, err = run_cli(capsys, "info", str(bad[0]), good, *map(str, bad[1:]))
    assert rc == cli.EXIT_USER_ERROR
    assert [line.split(": ")[2] for line in err.strip().splitlines()] == [str(p) for p in bad]
    assert out.startswith(good)


MEASURE_REFUSAL = """
import resource, sys, time
from pathlib import Path
from PIL import Image
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import read_image

def peak():
    # Linux keeps ru_maxrss across exec (the parent's size would hide ours); VmHWM is this
    # process image's own peak.
    status = Path("/proc/self/status")
    if status.is_file():
        line = next(l for l in status.read_text().splitlines() if l.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS

base, t0 = peak(), time.perf_counter()
try:
    read_image(sys.argv[1])
    message = "NOT REFUSED"
except CxrbsError as exc:
    message = str(exc)
seconds, refusal = time.perf_counter() - t0, peak() - base
with Image.open(sys.argv[1]) as im:  # the control: what decoding the same file costs
    im.load()
print(seconds, refusal, peak() - base)
print(message)
"""


def test_huge_image_refused_fast_without_decoding(tmp_path: Path) -> None:
    """Measured in a fresh process, where the peak memory is not hidden by earlier tests."""
    path = write_case(tmp_path, "huge")
    assert path.stat().st_size < 100_000  # a tiny file that would decode to 100 MB
    proc = subprocess.run([sys.executable, "-c", MEASURE_REFUSAL, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    numbers, message = proc.stdout.split("\n", 1)
    seconds, refusal, decode = (float(v) for v in numbers.split())
    assert "10000x10000" in message and "max_image_pixels" in message and str(path) in message
    assert seconds < 2.0
    assert refusal < 20e6  # bytes
    assert decode > 80e6, proc.stdout  # the measurement does see a decode


# ----------------------------------------------------------------- cxrbs suppress


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ResNet-BS checkpoint in the format `cxrbs train-bs` writes."""
    kwargs = {"width": 4, "n_blocks": 1, "output": "residual"}
    model = create_model("resnet_bs", seed=0, **kwargs)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    atomic.save_torch(path, {"model_name": "resnet_bs", "model_kwargs": kwargs,
                             "model_state": model.state_dict(),
                             "data": {"val_shape": [1, 2, MODEL_SIZE, MODEL_SIZE]}})
    return path


def suppress_available() -> bool:
    actions = [a for a in cli.build_parser()._actions if a.dest == "command"]
    return bool(actions) and "suppress" in (actions[0].choices or {})


needs_suppress = pytest.mark.skipif(not suppress_available(),
                                    reason="`cxrbs suppress` is not implemented yet")


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_suppress
@pytest.mark.parametrize("case", sorted(BAD))
def test_suppress_refuses_bad_file_and_keeps_earlier_output(
    case: str, tmp_path: Path, results: Path, tiny_model: Path,
    capsys: pytest.CaptureFixture[str], one_thread: None,
) -> None:
    path = write_case(tmp_path / "in", case)  # its output would be results/suppressed/case_bs.png
    rc, _, err = run_cli(capsys, "suppress", str(path), "-o", str(results / "suppressed"),
                         "--model", str(tiny_model))
    assert rc == cli.EXIT_USER_ERROR
    errors = [line for line in err.splitlines() if line.startswith("cxrbs: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and BAD[case][2] in errors[0], err


@needs_suppress
def test_suppress_takes_16_bit_and_rgb(
    tmp_path: Path, good_inputs: dict[str, tuple[Path, np.ndarray]], tiny_model: Path,
    capsys: pytest.CaptureFixture[str], one_thread: None,
) -> None:
    out = tmp_path / "out"
    paths = [str(good_inputs[k][0]) for k in ("png16", "rgb")]
    rc, _, err = run_cli(capsys, "suppress", *paths, "-o", str(out), "--model", str(tiny_model))
    assert rc == 0, err
    for key in ("png16", "rgb"):
        result = read_image(out / f"{good_inputs[key][0].stem}_bs.png")
        assert result.shape == (64, 48) and np.isfinite(result).all()


@needs_suppress
def test_suppress_bad_file_among_good_ones(
    tmp_path: Path, results: Path, good_inputs: dict[str, tuple[Path, np.ndarray]],
    tiny_model: Path, capsys: pytest.CaptureFixture[str], one_thread: None,
) -> None:
    """One corrupt file in a folder is reported and skipped; the others are written."""
    folder = tmp_path / "in"
    bad = write_case(folder, "truncated_png")
    small_png(folder / "fine.png")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "suppress", str(folder), "-o", str(out),
                              "--model", str(tiny_model))
    assert rc == cli.EXIT_USER_ERROR
    assert str(bad) in err and "1 input(s) failed" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["fine_bs.png"]


# ----------------------------------------------------------------- the workflow's data stage


def data_stage(root: Path, layout: str, results: Path, **options: object) -> None:
    """What workflow/scripts/build_manifest.py does for one data set."""
    max_pixels = options.pop("max_pixels", 40_000_000)
    manifest = build_manifest(root, layout, **options)
    out = results / "data" / "pairs"
    build_stack(manifest, out / "images.npy", size=MODEL_SIZE, max_pixels=max_pixels,
                progress=False)
    atomic.write_csv(out / "manifest.csv", manifest)


def paired_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pairs"
    small_png(root / "source" / "a.png")
    small_png(root / "target" / "a.png")
    return root


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("side", ["source", "target"])
def test_data_stage_names_the_bad_file(side: str, case: str, tmp_path: Path, results: Path) -> None:
    root = paired_folder(tmp_path)
    path = write_case(root / side, case)
    other = "target" if side == "source" else "source"
    small_png(root / other / f"{path.stem}.png")
    with pytest.raises(CxrbsError) as info:
        data_stage(root, "paired", results)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and BAD[case][2] in message, message


def test_data_stage_size_limit_is_configurable(tmp_path: Path, results: Path) -> None:
    root = paired_folder(tmp_path)
    with pytest.raises(CxrbsError, match=r"64x64 = 4,096 pixels, above the limit of 4,000"):
        data_stage(root, "paired", results, max_pixels=4_000)


def test_data_stage_takes_16_bit_and_rgb_pairs(
    tmp_path: Path, good_inputs: dict[str, tuple[Path, np.ndarray]]
) -> None:
    root = tmp_path / "pairs"
    for key in ("png16", "rgb"):
        src, _ = good_inputs[key]
        (root / "source").mkdir(parents=True, exist_ok=True)
        (root / "target").mkdir(parents=True, exist_ok=True)
        (root / "source" / src.name).write_bytes(src.read_bytes())
        (root / "target" / src.name).write_bytes(good_inputs["png16"][0].read_bytes())
    data_stage(root, "paired", tmp_path / "results")
    stack = load_stack(tmp_path / "results" / "data" / "pairs" / "images.npy")
    assert stack.shape == (2, 2, MODEL_SIZE, MODEL_SIZE)
    expected = preprocess_pair(good_inputs["png16"][1], good_inputs["png16"][1], MODEL_SIZE)
    row = pd.read_csv(tmp_path / "results" / "data" / "pairs" / "manifest.csv")
    i = int(np.flatnonzero(row["pair_id"] == "case16")[0])
    np.testing.assert_allclose(stack[i, 0] / 65535, expected[0], atol=1 / 65535)


def test_mismatched_pair_sizes_are_named(tmp_path: Path, results: Path) -> None:
    root = paired_folder(tmp_path)
    small_png(root / "source" / "JPCLN001.png", 64, 64)
    small_png(root / "target" / "JPCLN001.png", 48, 64)
    with pytest.raises(CxrbsError) as info:
        data_stage(root, "paired", results)
    message = str(info.value)
    assert "JPCLN001" in message and "64x64" in message and "64x48" in message
    assert str(root / "source" / "JPCLN001.png") in message
    assert str(root / "target" / "JPCLN001.png") in message


def test_unknown_file_in_class_folder_is_named(tmp_path: Path, results: Path) -> None:
    root = tmp_path / "cxr8"
    small_png(root / "normal" / "00000001_000.png")
    small_png(root / "pneumonia" / "00000002_000.png")
    (root / "pneumonia" / "labels.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(CxrbsError) as info:
        data_stage(root, "class_folders", results, classes={"normal": 0, "pneumonia": 1})
    assert str(root / "pneumonia" / "labels.xlsx") in str(info.value)


# ----------------------------------------------------------------- non-UTF-8 file names


def raw_name(folder: Path, name: bytes) -> bytes:
    """Create ``folder/name`` (bytes) or skip where the file system refuses such names."""
    folder.mkdir(parents=True, exist_ok=True)
    path = os.path.join(os.fsencode(folder), name)
    try:
        with open(path, "wb"):
            pass
    except OSError as exc:
        pytest.skip(f"file system refuses non-UTF-8 names: {exc}")
    return path


def assert_printable(message: str, shown: str) -> None:
    message.encode("utf-8")  # a lone surrogate here would crash print() and log files
    assert shown in message, message


def test_non_utf8_names_in_data_stage_messages(tmp_path: Path, results: Path) -> None:
    root = paired_folder(tmp_path)
    for side, (h, w) in (("source", (64, 64)), ("target", (48, 64))):
        with open(raw_name(root / side, b"ca\xffse.png"), "wb") as fh:
            Image.fromarray((gradient(h, w) * 255).astype(np.uint8)).save(fh, "PNG")
    with pytest.raises(CxrbsError) as info:  # mismatched sizes: message built by datasets
        data_stage(root, "paired", results)
    assert_printable(str(info.value), "ca\\xffse")

    with open(raw_name(root / "source", b"ca\xffse.png"), "wb") as fh:
        fh.write(b"not a png")
    with pytest.raises(CxrbsError) as info:  # unreadable file: message built by io
        data_stage(root, "paired", results)
    assert_printable(str(info.value), "ca\\xffse.png")

    classes = tmp_path / "classes"
    small_png(classes / "normal" / "x.png")
    raw_name(classes / "normal", b"no\xfftes.txt")
    with pytest.raises(CxrbsError) as info:  # unknown file: message built by manifests
        data_stage(classes, "class_folders", results, classes={"normal": 0})
    assert_printable(str(info.value), "no\\xfftes.txt")


def test_non_utf8_name_through_the_real_console(tmp_path: Path) -> None:
    path = raw_name(tmp_path, b"bad\xff.png")
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n broken")
    proc = subprocess.run([*CXRBS, "info", path], capture_output=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert proc.returncode == cli.EXIT_USER_ERROR
    err = proc.stderr.decode("utf-8")  # strict: the console got valid UTF-8
    assert re.fullmatch(r"cxrbs: error: .*bad\\xff\.png: .*\n", err), err
    assert "Traceback" not in err


# ----------------------------------------------------------------- configs with wrong types


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [
        ("size", "256", "image_size"),
        ("size", 4, "image_size"),
        ("low_pct", "1", "low_percentile"),
        ("high_pct", None, "high_percentile"),
        ("pair_stretch", "both", "pair_stretch"),
        ("max_pixels", "4e7", "max_image_pixels"),
        ("max_pixels", 4.0e7, "max_image_pixels"),
    ],
)
def test_wrong_config_type_is_named_before_any_image_is_read(
    option: str, value: object, key: str, tmp_path: Path, results: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = build_manifest(paired_folder(tmp_path), "paired")
    reads: list[object] = []
    monkeypatch.setattr("cxrbs.data.stacks.read_image_with_meta",
                        lambda p, **kw: reads.append(p))
    kwargs: dict[str, object] = {"size": MODEL_SIZE, option: value}
    with pytest.raises(CxrbsError, match=key):
        build_stack(manifest, results / "data" / "pairs" / "images.npy", progress=False,
                    **kwargs)  # type: ignore[arg-type]
    assert reads == []


@pytest.mark.parametrize("value", ["4e7", 4.0e7, 0, True])
def test_reader_limit_with_wrong_type_is_named(value: object, tmp_path: Path) -> None:
    with pytest.raises(CxrbsError, match="max_image_pixels"):
        read_image(small_png(tmp_path / "a.png"), max_pixels=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("values", [{"epochs": "ten"}, {"epochs": "10"}, {"epochs": 2.5},
                                    {"lr": "fast"}, {"crop_size": "32"}, {"seed": "x"}])
def test_train_config_wrong_type_is_named(values: dict[str, object]) -> None:
    with pytest.raises(CxrbsError, match=next(iter(values))):
        TrainConfig.from_mapping(values)


@needs_suppress
def test_cli_option_with_wrong_type(
    tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run_cli(capsys, "suppress", str(small_png(tmp_path / "a.png")), "-o",
                         str(results / "suppressed"), "--size", "large")
    assert rc == 2 and "--size" in err and "'large'" in err


# ----------------------------------------------------------------- preprocess_pair, any input

DTYPES = [np.uint8, np.uint16, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_]


def _elements(dtype: type) -> st.SearchStrategy | None:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return st.floats(allow_nan=False, allow_infinity=False, width=8 * dt.itemsize)
    return None


@st.composite
def image_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)))
    if draw(st.booleans()):
        shape = (*shape, draw(st.sampled_from([3, 4])))  # RGB(A)
    pair = []
    for _ in range(2):
        dtype = draw(st.sampled_from(DTYPES))
        pair.append(draw(arrays(dtype, shape, elements=_elements(dtype))))
    return pair[0], pair[1]


@settings(max_examples=120, deadline=None)
@given(pair=image_pairs(), size=st.sampled_from([8, 19, 32]), mode=st.sampled_from(PAIR_MODES))
def test_preprocess_pair_any_input(
    pair: tuple[np.ndarray, np.ndarray], size: int, mode: str
) -> None:
    source, target = pair
    outs = preprocess_pair(source, target, size, mode=mode)
    for out in outs:
        assert out.shape == (size, size) and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # The source always gets the single-image preprocessing (same stretch the model sees at
    # inference); so does the target in independent mode. Huge values are rescaled by a common
    # power of two, which may differ between the pair and the single image: excluded there.
    tame = max(np.abs(source.astype(np.float64)).max(), np.abs(target.astype(np.float64)).max())
    if tame <= 1e150:
        np.testing.assert_array_equal(outs[0], preprocess(source, size))
        if mode == "independent":
            np.testing.assert_array_equal(outs[1], preprocess(target, size))
    same = preprocess_pair(source, source, size, mode=mode)
    np.testing.assert_array_equal(same[0], same[1])


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), dh=st.integers(0, 3), dw=st.integers(0, 3))
def test_preprocess_pair_mismatch_named(h: int, w: int, dh: int, dw: int) -> None:
    source, target = np.zeros((h, w)), np.zeros((h + dh, w + dw))
    if dh == dw == 0:
        assert preprocess_pair(source, target, 8, name="P1")[0].shape == (8, 8)
        return
    with pytest.raises(CxrbsError, match=rf"pair \(P1\) is mismatched: source is {h}x{w}"):
        preprocess_pair(source, target, 8, name="P1")
