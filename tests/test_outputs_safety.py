"""Outputs never cost data: no rename over devices, FIFOs or folders, no output that is an input,
SIGTERM removes partial files (exit 143), and a rerun clears what a killed run left."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrbs.bs.suppress import _output_plan, iter_inputs, suppress_files
from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHILD_ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------- never replace a non-file


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
@pytest.mark.parametrize("write", [
    lambda p: atomic.write_csv(p, pd.DataFrame({"a": [1]})),
    lambda p: atomic.write_text(p, "x"),
    lambda p: atomic.save_npy(p, np.zeros(3)),
], ids=["csv", "text", "npy"])
def test_device_as_output_is_refused_and_stays_a_device(write: object) -> None:
    with pytest.raises(CxrbsError, match=r"^output /dev/null exists and is a device") as info:
        write("/dev/null")  # type: ignore[operator]
    assert "\n" not in str(info.value)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not temps(Path("/dev"))


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_link_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "out.csv"
    link.symlink_to("/dev/full")
    with pytest.raises(CxrbsError, match="is a device"):
        atomic.write_text(link, "x")
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_fifo_as_output_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    with pytest.raises(CxrbsError, match=r"is a FIFO"):
        atomic.write_csv(fifo, pd.DataFrame({"a": [1]}))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not temps(tmp_path)


def test_folder_as_output_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "out.png"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(CxrbsError, match=r"is a folder"):
        write_png(folder, np.zeros((40, 40)))
    assert (folder / "inside").is_dir()
    assert not temps(tmp_path)


def test_regular_file_and_link_to_one_are_still_replaced(tmp_path: Path) -> None:
    final = tmp_path / "x.txt"
    final.write_text("old")
    atomic.write_text(final, "new")
    assert final.read_text() == "new"
    link = tmp_path / "link.txt"
    link.symlink_to(final)
    atomic.write_text(link, "newer")  # issue 25: written through, the link stays a link
    assert link.is_symlink() and final.read_text() == "newer"


# ---------------------------------------------------------------- SIGTERM


CHILD_TERMINATED_MID_WRITE = """
import sys, time
from cxrbs import cli
from cxrbs.core import atomic

def write(args):
    with atomic.atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"the first half of a new file")
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)

# cxrbs.cli.main as every subcommand runs in it: SIGTERM ends like Ctrl-C, exit status 143
cli.info_commands.models = write
sys.exit(cli.main(["models"]))
"""

GLUE_TERMINATED_MID_WRITE = """
import sys, time
from types import SimpleNamespace
from cxrbs.core import atomic
from cxrbs.core.snakemake_glue import run

def main(sm):
    with atomic.atomic_path(sm.output[0]) as tmp:
        tmp.write_bytes(b"partial")
        print("writing", flush=True)
        time.sleep(60)

run(SimpleNamespace(log=[], output=[sys.argv[1]], threads=None), main)
"""


@pytest.mark.parametrize("script", [CHILD_TERMINATED_MID_WRITE, GLUE_TERMINATED_MID_WRITE],
                         ids=["cli-main", "workflow-glue"])
def test_sigterm_mid_write_removes_the_temporary_and_exits_143(script: str,
                                                                 tmp_path: Path) -> None:
    final = tmp_path / "out" / "result.csv"
    final.parent.mkdir()
    final.write_bytes(b"complete old result")
    proc = subprocess.Popen([sys.executable, "-c", script, str(final)], env=CHILD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        assert temps(final.parent)  # the partial file exists while it writes
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM; partial outputs removed" in err
    assert "Traceback" not in err
    assert not temps(final.parent)
    assert final.read_bytes() == b"complete old result"


def test_sigterm_handler_is_restored_after_the_cli() -> None:
    """cxrbs.cli.main called as a library function leaves the process's handler as it was."""
    from cxrbs.cli import main

    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # other in-process tests may have
    try:                                                      # left the project's handler set
        before = signal.getsignal(signal.SIGTERM)
        assert main(["-q", "models"]) == 0
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, original)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(proc.stdout)
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        time.sleep(0.05)
    pytest.skip("pid still in use")


def test_suppress_rerun_removes_partial_outputs_of_a_killed_run(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_png(inputs / "a.png", np.full((40, 40), 0.5))
    out = tmp_path / "out"
    out.mkdir()
    host = re.search(r"-([A-Za-z0-9-]+)\.png$", atomic.temp_path(out / "a_bs.png").name)
    assert host is not None
    stale = out / f".a_bs.tmp{_dead_pid()}-{host.group(1)}.png"
    stale.write_bytes(b"half an image")
    with pytest.raises(CxrbsError):  # no usable model: it stops, but only after the cleanup
        suppress_files([inputs], out, tmp_path / "no-model.pt", progress=False)
    assert not stale.exists()


# ---------------------------------------------------------------- never read our own outputs


def test_output_folder_inside_the_input_folder_is_not_read(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    for name in ("a.png", "sub/b.png", "out/a_bs.png", "out/sub/b_bs.png"):
        write_png(inputs / name, np.full((40, 40), 0.5))
    found = [p.relative_to(inputs).as_posix() for p in iter_inputs([inputs],
                                                                   exclude=[inputs / "out"])]
    assert found == ["a.png", "sub/b.png"]
    # the plan excludes -o by itself, also when it is given by another spelling
    plan = _output_plan([inputs], inputs / "sub" / ".." / "out", "png")
    assert [src.name for src, _ in plan] == ["a.png", "b.png"]
    assert [dst.name for _, dst in plan] == ["a_bs.png", "b_bs.png"]
