"""Threads that fit the machine (issue 24): the affinity mask and the cgroup quota, not the
host's core count, set torch's default; --threads on `cxrbs suppress`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cxrbs.core import device


def test_usable_cpus_follows_affinity_and_cgroup_quota(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert device.usable_cpus(tmp_path) == 4  # no cgroup files: the mask
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert device.usable_cpus(tmp_path) == 1  # 1.5 CPUs of quota -> 1 thread
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert device.usable_cpus(tmp_path) == 4
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert device.usable_cpus(tmp_path) == 2  # cgroup v1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert device.usable_cpus(tmp_path) == 1


def test_default_threads_are_the_usable_cpus(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(device, "usable_cpus", lambda: 1)
        torch.set_num_threads(2)
        device.configure_threads(None)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(2)
        device.configure_threads(None)  # the user's OMP_NUM_THREADS wins
        assert torch.get_num_threads() == 2
        with pytest.raises(device.CxrbsError, match="positive integer"):
            device.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_suppress_takes_threads() -> None:
    from cxrbs.cli import build_parser

    args = build_parser().parse_args(["suppress", "x.png", "-o", "out", "--threads", "1"])
    assert args.threads == 1


def _tiny_checkpoint(tmp_path: Path) -> Path:
    from cxrbs.models import create_model
    from cxrbs.models.checkpoint import header, save_checkpoint

    model = create_model("unet_bs", width=4, levels=2, seed=0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, header(kind="bs", model_name="unet_bs",
                                 model_kwargs={"width": 4, "levels": 2}, input_size=32, seed=0,
                                 versions={}, output_mode="residual"), model.state_dict())
    return ckpt


def _inputs(tmp_path: Path, n: int = 5) -> Path:
    import numpy as np

    from cxrbs.data.io import write_png

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        write_png(src / f"img{i}.png", rng.uniform(0, 1, (48 + 8 * i, 40)), bits=16)
    return src


def test_lanes_write_the_same_bytes_and_skip_bad_files(tmp_path: Path) -> None:
    """Images suppressed side by side on worker threads (issue 24): the same bytes as one at a
    time, in input order, a bad file in the middle reported and skipped, torch's thread count
    restored afterwards."""
    from cxrbs.bs.suppress import suppress_files

    src = _inputs(tmp_path)
    (src / "img2b.png").write_bytes(b"not a png")  # a bad file in the middle
    ckpt = _tiny_checkpoint(tmp_path)
    before = torch.get_num_threads()
    outs = {}
    for workers in (1, 2, 3):
        bad: list[Path] = []
        written = suppress_files([src], tmp_path / f"out{workers}", ckpt, progress=False,
                                 workers=workers, precision="fp32",
                                 on_error=lambda p, e: bad.append(p))
        assert [p.name for p in bad] == ["img2b.png"]
        outs[workers] = {p.name: p.read_bytes() for p in written}
        assert list(outs[workers]) == [f"img{i}_bs.png" for i in range(5)]
        assert torch.get_num_threads() == before
    assert outs[1] == outs[2] == outs[3]


def test_lanes_stop_at_the_first_bad_file_without_on_error(tmp_path: Path) -> None:
    from cxrbs.bs.suppress import suppress_files

    src = _inputs(tmp_path, n=3)
    (src / "img1b.png").write_bytes(b"not a png")
    with pytest.raises(device.CxrbsError, match="img1b.png"):
        suppress_files([src], tmp_path / "out", _tiny_checkpoint(tmp_path), progress=False,
                       workers=2, precision="fp32")
    assert not any(p.name.startswith(".") for p in (tmp_path / "out").rglob("*"))  # no temps


def test_fp32_is_the_reference_path_and_bf16_stays_close(tmp_path: Path) -> None:
    """precision fp32 gives exactly suppress_image's default arithmetic; bf16 (channels-last)
    differs by less than one 8-bit grey level on these inputs."""
    import numpy as np

    from cxrbs.bs.predict import load_bs_model
    from cxrbs.bs.suppress import suppress_files, suppress_image
    from cxrbs.data.io import read_image

    src = _inputs(tmp_path, n=3)
    ckpt = _tiny_checkpoint(tmp_path)
    model, _ = load_bs_model(ckpt)
    fp32 = suppress_files([src], tmp_path / "fp32", ckpt, progress=False, precision="fp32")
    bf16 = suppress_files([src], tmp_path / "bf16", ckpt, progress=False, precision="bf16")
    for i, (a, b) in enumerate(zip(fp32, bf16, strict=True)):
        ref = suppress_image(model, read_image(src / f"img{i}.png"), size=32)
        stored = np.round(np.clip(ref, 0, 1) * 65535).astype(np.uint16)
        got_a, got_b = read_image(a), read_image(b)
        assert np.array_equal(np.round(got_a * 65535).astype(np.uint16), stored)
        assert float(np.abs(got_a - got_b).max()) < 1 / 255


def test_precision_auto_follows_the_hardware(monkeypatch) -> None:
    assert device.inference_amp("fp32", "cpu") == "none"
    assert device.inference_amp("bf16", "cpu") == "bf16"
    monkeypatch.setattr(device, "native_bf16", lambda dev: True)
    assert device.inference_amp("auto", "cpu") == "bf16"
    monkeypatch.setattr(device, "native_bf16", lambda dev: False)
    assert device.inference_amp("auto", "cpu") == "none"
    with pytest.raises(device.CxrbsError, match="fp32"):
        device.inference_amp("fp16", "cpu")
    assert isinstance(device.native_bf16("cpu"), bool)


def test_suppress_takes_workers_and_precision() -> None:
    from cxrbs.cli import build_parser

    args = build_parser().parse_args(["suppress", "x.png", "-o", "out", "--workers", "2",
                                      "--precision", "fp32"])
    assert (args.workers, args.precision) == (2, "fp32")
