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


def test_pipelined_suppress_writes_the_same_bytes_and_skips_bad_files(tmp_path: Path) -> None:
    """Decoding and writing on a worker thread changes nothing in the outputs (issue 24)."""
    import numpy as np

    from cxrbs.bs.suppress import suppress_files
    from cxrbs.data.io import write_png
    from cxrbs.models import create_model
    from cxrbs.models.checkpoint import header, save_checkpoint

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        write_png(src / f"img{i}.png", rng.uniform(0, 1, (48 + 8 * i, 40)), bits=16)
    (src / "img2b.png").write_bytes(b"not a png")  # a bad file in the middle
    model = create_model("unet_bs", width=4, levels=2, seed=0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, header(kind="bs", model_name="unet_bs",
                                 model_kwargs={"width": 4, "levels": 2}, input_size=32, seed=0,
                                 versions={}, output_mode="residual"), model.state_dict())
    outs = {}
    for workers in (0, 1, 2):
        bad: list[Path] = []
        written = suppress_files([src], tmp_path / f"out{workers}", ckpt, progress=False,
                                 io_workers=workers, on_error=lambda p, e: bad.append(p))
        assert [p.name for p in bad] == ["img2b.png"]
        outs[workers] = {p.name: p.read_bytes() for p in written}
        assert list(outs[workers]) == [f"img{i}_bs.png" for i in range(5)]
    assert outs[0] == outs[1] == outs[2]
