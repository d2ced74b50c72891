"""Faults: a training job killed by a signal resumes to the uninterrupted result; every writer is
atomic (no half-written file under its final name, no temporary left behind); a full disk or an
unwritable folder gives one CxrbsError naming the path.

Crashes are real where that is cheap (SIGKILL/SIGTERM of a child process, ENOSPC from
``/dev/full``) and monkeypatched where the kernel cannot be asked (a failure after some bytes).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import cxrbs.bs.pairs as bs_data_mod
import cxrbs.data.stacks as datasets_mod
from cxrbs.core import atomic
from cxrbs.data import io
from cxrbs.bs.pairs import prepare_pairs
from cxrbs.data.stacks import build_stack, load_stack
from cxrbs.core.errors import CxrbsError
from cxrbs.data.manifests import build_manifest
from cxrbs.data.phantoms import make_phantom
from cxrbs.bs.train import HISTORY_COLUMNS, TrainConfig, train_bs

EPOCHS = 6
STEPS = 16  # about 0.5 s per epoch on one CPU thread at 48 px
TRAIN_SCRIPT = """
import logging, sys
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from cxrbs.bs.train import TrainConfig, train_bs
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
data, out, epochs, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = TrainConfig(epochs=epochs, batch_size=4, steps_per_epoch=steps, lr=2e-3, lr_patience=1,
                  crop_size=None, seed=11, threads=1, device="cpu")
train_bs("resnet_bs", {"width": 8, "n_blocks": 1, "output": "residual"},
         np.load(data / "train.npy"), np.load(data / "val.npy"), cfg, out, progress=False)
"""
CLS_TRAIN_SCRIPT = """
import logging, sys
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from cxrbs.cls.train import ClsTrainConfig, train_classifier
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
data, out, epochs, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = ClsTrainConfig(epochs=epochs, batch_size=8, steps_per_epoch=steps, optimizer="adamw",
                     lr=3e-3, lr_patience=1, warmup_epochs=1, early_stopping_patience=epochs,
                     collapse_patience=epochs, val_fraction=0.25, seed=11, threads=1,
                     device="cpu")
train_classifier("small_cnn", {"widths": [4, 8, 8, 8]}, np.load(data / "images.npy"),
                 np.load(data / "labels.npy"), np.load(data / "ids.npy"), cfg, out,
                 progress=False)
"""
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def phantom_pairs(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, 2, size, size), np.float32)
    for i in range(n):
        ph = make_phantom(rng, size)
        out[i, 0], out[i, 1] = ph.radiograph, ph.soft_tissue
    return out


def temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*tmp*"))


# ----------------------------------------------------------------- killing a training process


class TrainingProcess:
    """``train_bs`` (or ``train_classifier``) in its own Python process, so a signal kills it
    for real."""

    def __init__(self, data: Path, out: Path, script: str = TRAIN_SCRIPT) -> None:
        self.out = out
        cmd = [sys.executable, "-c", script, str(data), str(out), str(EPOCHS), str(STEPS)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=CHILD_ENV)
        self._stderr: str | None = None

    def finish(self, timeout: float = 180) -> str:
        """Wait for a normal end; returns the log (stderr)."""
        if self._stderr is None:
            try:
                _, self._stderr = self.proc.communicate(timeout=timeout)
            finally:
                self.stop()
            assert self.proc.returncode == 0, self._stderr[-4000:]
        return self._stderr

    def wait_for_epochs(self, n: int, timeout: float = 120) -> None:
        history = self.out / "history.csv"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                pytest.fail(f"training ended before epoch {n} (rc {self.proc.returncode}): "
                            f"{err[-3000:]}")
            if history.is_file() and len(pd.read_csv(history)) >= n:
                return
            time.sleep(0.02)
        self.proc.kill()
        pytest.fail(f"no epoch {n} within {timeout} s")

    def kill(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        self.proc.communicate(timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    np.save(folder / "train.npy", phantom_pairs(8, 48, 5))
    np.save(folder / "val.npy", phantom_pairs(2, 48, 6))
    return folder


@pytest.fixture(scope="module")
def reference_run(training_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run; it trains in the background while the first victim does."""
    run = TrainingProcess(training_data, tmp_path_factory.mktemp("reference") / "run")
    yield run
    run.stop()


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model_state"]


def assert_equal_tensors(a: Any, b: Any, where: str) -> None:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_training_resumes_to_the_uninterrupted_result(
    sig: signal.Signals, training_data: Path, reference_run: TrainingProcess, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    victim = TrainingProcess(training_data, out)
    try:
        victim.wait_for_epochs(2)
        victim.kill(sig)
    finally:
        victim.stop()
    assert victim.proc.returncode == -sig  # it died by the signal, it did not finish
    ckpt = torch.load(out / "last.pt", weights_only=True)
    done = int(ckpt["epoch"])
    assert 2 <= done < EPOCHS

    log = TrainingProcess(training_data, out).finish()
    assert f"resuming from epoch {done}" in log
    reference = reference_run.finish()
    assert "resuming" not in reference

    final = pd.read_csv(out / "history.csv")
    ref = pd.read_csv(reference_run.out / "history.csv")
    assert final["epoch"].tolist() == list(range(1, EPOCHS + 1))  # none lost, none repeated
    # Epochs before the kill were not recomputed: even their timings are the killed run's.
    before = pd.DataFrame(ckpt["history"], columns=HISTORY_COLUMNS)
    pd.testing.assert_frame_equal(final.iloc[:done].reset_index(drop=True), before,
                                  check_exact=True, check_dtype=False)
    cols = ["epoch", "loss", "val_loss", "lr"]
    pd.testing.assert_frame_equal(final[cols], ref[cols], check_exact=True)
    for name in ("best.pt", "last.pt"):
        assert_equal_tensors(model_state(out / name), model_state(reference_run.out / name), name)
    assert_equal_tensors(
        torch.load(out / "last.pt", weights_only=True)["optimizer_state"],
        torch.load(reference_run.out / "last.pt", weights_only=True)["optimizer_state"],
        "optimizer_state",
    )
    assert not temps(out)


@pytest.fixture(scope="module")
def classifier_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cls")
    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(24), 2)
    y = ids % 2
    imgs = rng.uniform(0.2, 0.4, (ids.size, 48, 48)).astype(np.float32)
    imgs[y == 1, 10:22, 12:24] += 0.4
    np.save(folder / "images.npy", imgs)
    np.save(folder / "labels.npy", y)
    np.save(folder / "ids.npy", ids.astype(str))
    return folder


@pytest.fixture(scope="module")
def classifier_reference(classifier_data: Path, tmp_path_factory: pytest.TempPathFactory):
    run = TrainingProcess(classifier_data, tmp_path_factory.mktemp("cls_reference") / "run",
                          CLS_TRAIN_SCRIPT)
    yield run
    run.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_classifier_training_resumes_to_the_uninterrupted_result(
    sig: signal.Signals, classifier_data: Path, classifier_reference: TrainingProcess,
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    victim = TrainingProcess(classifier_data, out, CLS_TRAIN_SCRIPT)
    try:
        victim.wait_for_epochs(2)
        victim.kill(sig)
    finally:
        victim.stop()
    assert victim.proc.returncode == -sig
    done = int(torch.load(out / "last.pt", weights_only=True)["epoch"])
    assert 2 <= done < EPOCHS and not (out / "model.pt").exists()

    log = TrainingProcess(classifier_data, out, CLS_TRAIN_SCRIPT).finish()
    assert f"resuming from epoch {done}" in log
    assert "resuming" not in classifier_reference.finish()
    ref_out = classifier_reference.out
    cols = ["epoch", "loss", "val_loss", "val_auc", "val_acc", "lr"]
    final, ref = pd.read_csv(out / "history.csv"), pd.read_csv(ref_out / "history.csv")
    assert final["epoch"].tolist() == list(range(1, EPOCHS + 1))
    pd.testing.assert_frame_equal(final[cols], ref[cols], check_exact=True)
    assert_equal_tensors(torch.load(out / "model.pt", weights_only=True)["state_dict"],
                         torch.load(ref_out / "model.pt", weights_only=True)["state_dict"],
                         "model.pt")
    for key in ("model_state", "optimizer_state", "torch_rng"):
        assert_equal_tensors(torch.load(out / "last.pt", weights_only=True)[key],
                             torch.load(ref_out / "last.pt", weights_only=True)[key], key)
    assert not temps(out)


CHILD_KILLED_MID_WRITE = """
import os, signal, sys
from cxrbs.core import atomic
with atomic.atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"the first half of a new checkpoint")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_mid_write_keeps_old_file_and_next_job_clears_the_temporary(
    tmp_path: Path,
) -> None:
    final = tmp_path / "results" / "last.pt"
    final.parent.mkdir(parents=True)
    final.write_bytes(b"complete old checkpoint")
    proc = subprocess.run([sys.executable, "-c", CHILD_KILLED_MID_WRITE, str(final)],
                          capture_output=True, text=True, env=CHILD_ENV, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert final.read_bytes() == b"complete old checkpoint"
    [left] = temps(final.parent)  # a SIGKILL leaves no chance to clean up...
    assert left.read_bytes() == b"the first half of a new checkpoint"
    dead_pid = int(re.search(r"\.tmp(\d+)-", left.name).group(1))

    # ...so the next job's ensure_dir does, sparing writers that may still be running.
    ours = atomic.temp_path(final.parent / "live.csv")  # this process: alive
    ours.write_text("in progress")
    host = re.search(rf"\.tmp{os.getpid()}-([A-Za-z0-9-]+)\.csv$", ours.name).group(1)
    foreign = final.parent / f".other.tmp{dead_pid}-not{host}.csv"  # another node's writer
    foreign.write_text("in progress elsewhere")
    user_file = final.parent / ".notes.tmp"  # not ours at all
    user_file.write_text("keep")
    assert atomic.ensure_dir(final.parent) == final.parent
    assert not left.exists()
    assert ours.exists() and foreign.exists() and user_file.exists()
    assert final.read_bytes() == b"complete old checkpoint"


CHILD_KILLED_MID_STACK = """
import os, signal, sys
import pandas as pd
import cxrbs.data.stacks as ds
real, calls = ds.read_image_with_meta, []
def dying_read(path, **kw):
    calls.append(path)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, **kw)
ds.read_image_with_meta = dying_read
ds.build_stack(pd.read_csv(sys.argv[1]), __import__("pathlib").Path(sys.argv[2]), size=32,
               progress=False)
"""


def test_sigkill_while_building_a_stack(tmp_path: Path) -> None:
    """The biggest temporaries (GB-sized stacks) must not pile up after killed data jobs."""
    for i in range(4):
        io.write_png(tmp_path / "imgs" / "normal" / f"p{i}.png", phantom_pairs(1, 48, i)[0, 0])
    manifest = build_manifest(tmp_path / "imgs", "class_folders", classes={"normal": 0})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "results" / "data" / "set" / "images.npy"
    out.parent.mkdir(parents=True)
    np.save(out, np.full((1, 1, 8, 8), 7, np.uint16))
    old = out.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_KILLED_MID_STACK, str(tmp_path / "manifest.csv"), str(out)],
        capture_output=True, text=True, env=CHILD_ENV, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert out.read_bytes() == old
    assert len(temps(out.parent)) == 1
    build_stack(manifest, out, size=32, progress=False)  # the rerun
    assert load_stack(out).shape == (4, 1, 32, 32)
    assert not temps(out.parent)


# ----------------------------------------------------------------- crashes inside a writer


def tiny_dicom(path: Path) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    ds.PatientID, ds.Modality = "P1", "CR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = 40, 40
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(1600, dtype="<u2") % 4096).tobytes()
    ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta, ds.preamble = meta, b"\x00" * 128
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


IMG = np.linspace(0, 1, 40 * 40).reshape(40, 40)

# name -> (final file name, object and attribute the writer calls, the write(final, template))
WRITERS: dict[str, tuple[str, tuple[Any, str], Callable[[Path, Path], None]]] = {
    "write_png": ("x.png", (Image.Image, "save"), lambda f, d: io.write_png(f, IMG, bits=16)),
    "write_csv": ("x.csv", (pd.DataFrame, "to_csv"),
                  lambda f, d: atomic.write_csv(f, pd.DataFrame({"a": [1, 2]}))),
    "write_json": ("x.json", (Path, "write_text"), lambda f, d: atomic.write_json(f, {"a": 1})),
    "save_npy": ("x.npy", (np, "save"), lambda f, d: atomic.save_npy(f, IMG)),
    "save_torch": ("x.pt", (torch, "save"),
                   lambda f, d: atomic.save_torch(f, {"w": torch.ones(3)})),
    "write_dicom_derived": ("x.dcm", (pydicom, "dcmwrite"),
                            lambda f, t: io.write_dicom_derived(f, IMG, t)),
}


def crash_after_some_bytes(exc: BaseException) -> Callable[..., None]:
    """Stand-in for a library writer: writes part of a file to its target, then fails."""

    def fake(*args: Any, **kwargs: Any) -> None:
        target = next(a for a in args if isinstance(a, (str, Path)) or hasattr(a, "write"))
        if hasattr(target, "write"):
            target.write(b"PARTIAL" * 1000)
            target.flush()
        else:
            Path(target).write_bytes(b"PARTIAL" * 1000)
        raise exc

    return fake


@pytest.mark.parametrize("had_old", [False, True], ids=["new", "replace"])
@pytest.mark.parametrize("kind", ["ENOSPC", "interrupt", "bug"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writer_crash_leaves_no_partial_file(
    writer: str, kind: str, had_old: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, (owner, attr), write = WRITERS[writer]
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    final = out_dir / name
    if had_old:
        final.write_bytes(b"previous complete version")
    template = tiny_dicom(tmp_path / "template.dcm")  # before the writer is broken
    exc: BaseException = {
        "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
        "interrupt": KeyboardInterrupt(),
        "bug": RuntimeError("library bug"),
    }[kind]
    monkeypatch.setattr(owner, attr, crash_after_some_bytes(exc))
    expected = {"ENOSPC": CxrbsError, "interrupt": KeyboardInterrupt, "bug": RuntimeError}[kind]
    with pytest.raises(expected) as info:
        write(final, template)
    if kind == "ENOSPC":
        assert "disk full" in str(info.value) and str(final) in str(info.value)
    if had_old:
        assert final.read_bytes() == b"previous complete version"
    else:
        assert not final.exists()
    assert not temps(out_dir)


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """Four phantom pairs as PNG folders, their manifest and a prepared stack."""
    root = tmp_path_factory.mktemp("pairset")
    for i, pair in enumerate(phantom_pairs(4, 48, 21)):
        io.write_png(root / "set" / "source" / f"c{i}.png", pair[0])
        io.write_png(root / "set" / "target" / f"c{i}.png", pair[1])
    manifest = build_manifest(root / "set", "paired")
    manifest.to_csv(root / "manifest.csv", index=False)
    build_stack(manifest, root / "images.npy", size=32, progress=False)
    return manifest, root


@pytest.mark.parametrize("had_old", [False, True], ids=["new", "replace"])
def test_build_stack_crash_mid_loop(
    had_old: bool, pair_set: tuple[pd.DataFrame, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest, _ = pair_set
    out = tmp_path / "results" / "images.npy"
    if had_old:
        out.parent.mkdir(parents=True)
        np.save(out, np.zeros((1, 2, 8, 8), np.uint16))
    old = out.read_bytes() if had_old else None
    real, calls = datasets_mod.read_image_with_meta, []

    def read_then_fail(path: Any, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
        calls.append(path)
        if len(calls) == 3:  # pair 0 is already in the stack
            raise KeyboardInterrupt
        return real(path, **kw)

    monkeypatch.setattr(datasets_mod, "read_image_with_meta", read_then_fail)
    with pytest.raises(KeyboardInterrupt):
        build_stack(manifest, out, size=32, progress=False)
    assert len(calls) == 3
    assert (out.read_bytes() == old) if had_old else not out.exists()
    assert not temps(out.parent)


def test_prepare_pairs_crash_keeps_previous_outputs(
    pair_set: tuple[pd.DataFrame, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root = pair_set
    out = tmp_path / "results" / "bs" / "data"
    out.mkdir(parents=True)
    (out / "train.npy").write_bytes(b"old train")

    def augment_then_fail(pairs: np.ndarray, n_out: int, *, out: np.ndarray, **kw: Any) -> None:
        out[0] = 1.0
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bs_data_mod, "augment_pairs", augment_then_fail)
    with pytest.raises(CxrbsError, match=re.escape(str(out / "train.npy"))):
        prepare_pairs([root / "manifest.csv"], [root / "images.npy"], train_out=out / "train.npy",
                      val_out=out / "val.npy", split_out=out / "split.csv", val_fraction=0.25,
                      n_pairs=6, seed=1, progress=False)
    assert (out / "train.npy").read_bytes() == b"old train"
    assert sorted(p.name for p in out.iterdir()) == ["train.npy"]


# ----------------------------------------------------------------- full disk, unwritable folder


def dev_full_available() -> bool:
    return Path("/dev/full").exists() and sys.platform.startswith("linux")


@pytest.mark.skipif(not dev_full_available(), reason="/dev/full (Linux) is needed for real ENOSPC")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_real_disk_full_names_the_file(writer: str, tmp_path: Path) -> None:
    """The kernel's own ENOSPC: every write to /dev/full fails, as on a full disk."""
    name, _, write = WRITERS[writer]
    final = tmp_path / "results" / name
    final.parent.mkdir()
    final.write_bytes(b"previous complete version")
    template = tiny_dicom(tmp_path / "template.dcm")
    atomic.temp_path(final).symlink_to("/dev/full")  # the writer's temporary lands on it
    with pytest.raises(CxrbsError) as info:
        write(final, template)
    message = str(info.value)
    assert "disk full" in message and str(final) in message, message
    assert final.read_bytes() == b"previous complete version"
    assert not temps(final.parent)


@pytest.mark.skipif(not dev_full_available(), reason="/dev/full (Linux) is needed for real ENOSPC")
def test_disk_full_during_training_checkpoint(tmp_path: Path) -> None:
    """torch's own writer reports ENOSPC as 'unexpected pos'; the user must see 'disk full'."""
    out = tmp_path / "run"
    out.mkdir()
    atomic.temp_path(out / "last.pt").symlink_to("/dev/full")
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=1, crop_size=None, threads=1,
                      device="cpu")
    before = torch.get_num_threads()
    try:
        with pytest.raises(CxrbsError, match=r"disk full while writing .*last\.pt"):
            train_bs("resnet_bs", {"width": 4, "n_blocks": 1}, phantom_pairs(2, 32, 1),
                     phantom_pairs(1, 32, 2), cfg, out, progress=False)
    finally:
        torch.set_num_threads(before)
    assert not (out / "last.pt").exists()
    assert not temps(out)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="needs os.posix_fallocate")
def test_stack_space_is_reserved_before_decoding(
    pair_set: tuple[pd.DataFrame, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memory-mapped stack on a full disk would die of SIGBUS mid-way; reserve it up front."""
    manifest, _ = pair_set
    reads: list[Any] = []
    monkeypatch.setattr(datasets_mod, "read_image_with_meta", lambda p, **kw: reads.append(p))

    def no_space(fd: int, offset: int, length: int) -> None:
        assert length >= 4 * 2 * 32 * 32 * 2  # the whole stack, not a header
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    out = tmp_path / "results" / "images.npy"
    with pytest.raises(CxrbsError, match=r"disk full while writing .*images\.npy"):
        build_stack(manifest, out, size=32, progress=False)
    assert reads == []  # refused before the first image was decoded
    assert not out.exists() and not temps(out.parent)


def unwritable_calls(base: Path, tmp_path: Path) -> dict[str, Callable[[], object]]:
    return {
        "write_png": lambda: io.write_png(base / "png" / "x.png", IMG),
        "write_csv": lambda: atomic.write_csv(base / "csv" / "x.csv", pd.DataFrame({"a": [1]})),
        "save_torch": lambda: atomic.save_torch(base / "pt" / "x.pt", {"a": 1}),
        "build_stack": lambda: build_stack(
            pd.DataFrame({"image_path": [str(tmp_path / "none.png")], "patient_id": ["p"]}),
            base / "data" / "images.npy", size=32, progress=False),
        "train_bs": lambda: train_bs(
            "resnet_bs", {"width": 4, "n_blocks": 1}, phantom_pairs(2, 32, 1),
            phantom_pairs(1, 32, 2), TrainConfig(epochs=1, threads=1, device="cpu"),
            base / "run", progress=False),
    }


@pytest.mark.parametrize("call", ["write_png", "write_csv", "save_torch", "build_stack",
                                  "train_bs"])
def test_output_below_a_file_names_the_path(call: str, tmp_path: Path) -> None:
    """A real ENOTDIR: 'results' exists but is a file (a botched copy, a mistyped path)."""
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    before = torch.get_num_threads()
    try:
        with pytest.raises(CxrbsError) as info:
            unwritable_calls(blocker, tmp_path)[call]()
    finally:
        torch.set_num_threads(before)
    message = str(info.value)
    assert str(blocker) in message and "cannot create folder" in message, message
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores permission bits; the simulated EACCES test covers it")
def test_read_only_folder_names_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "x.csv").write_text("old")
    folder.chmod(0o500)
    try:
        with pytest.raises(CxrbsError, match=re.escape(str(folder / "x.csv"))):
            atomic.write_csv(folder / "x.csv", pd.DataFrame({"a": [1]}))
    finally:
        folder.chmod(0o700)
    assert (folder / "x.csv").read_text() == "old"


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_failed_rename_names_the_path(
    err: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "results" / "x.png"
    final.parent.mkdir()
    final.write_bytes(b"old")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CxrbsError) as info:
        io.write_png(final, IMG)
    message = str(info.value)
    assert str(final) in message
    assert ("disk full" if err == errno.EDQUOT else "permission denied") in message
    assert final.read_bytes() == b"old" and not temps(final.parent)
