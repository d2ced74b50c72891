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
