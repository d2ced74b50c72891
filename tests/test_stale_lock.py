"""`make demo` recovers from the stale Snakemake lock of a killed run (issue 15), but never
from the live lock of another snakemake running in the same folder."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxrbs.core import stale_lock

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SNAKEFILE = 'rule all:\n    output: "done.txt"\n    shell: "echo ok > {output}"\n'
pytestmark = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")


def stale_workflow(tmp_path: Path) -> Path:
    """A tiny workflow whose run was killed: lock files written the way Snakemake writes them
    (persistence/file.py: ``N.input.lock``/``N.output.lock``, one path a line)."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    (locks / "0.output.lock").write_text("done.txt\n")
    return tmp_path


def run_snakemake(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SNAKEMAKE, "--cores", "1", "--quiet"], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_lock_is_real_without_the_unlock_step(tmp_path: Path) -> None:
    done = run_snakemake(stale_workflow(tmp_path))
    assert done.returncode != 0 and "lock" in (done.stdout + done.stderr).lower()


def test_stale_lock_is_removed_and_the_run_proceeds(tmp_path: Path, monkeypatch) -> None:
    work = stale_workflow(tmp_path)
    monkeypatch.chdir(work)
    assert stale_lock.has_locks(work)
    assert stale_lock.main([SNAKEMAKE]) == 0
    assert not stale_lock.has_locks(work)
    done = run_snakemake(work)
    assert done.returncode == 0, done.stderr
    assert (work / "done.txt").read_text() == "ok\n"


def test_a_live_snakemake_in_the_folder_keeps_its_lock(tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    work = stale_workflow(tmp_path)
    monkeypatch.chdir(work)
    # `fake` stands in for a running snakemake (argv[0] snakemake, cwd this folder); `other`
    # runs here too but is no snakemake.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=work)
    fake = subprocess.Popen(["snakemake", "60"], executable="sleep", cwd=work)
    try:
        time.sleep(0.3)
        assert fake.pid in stale_lock.snakemake_processes(work)
        assert other.pid not in stale_lock.snakemake_processes(work)
        assert stale_lock.main([SNAKEMAKE]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {fake.pid}" in err and "Traceback" not in err
        assert stale_lock.has_locks(work)  # untouched
    finally:
        for proc in (other, fake):
            proc.kill()
            proc.wait()


def test_no_lock_is_a_no_op(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert stale_lock.main(["/nonexistent/snakemake"]) == 0  # not even started


def test_make_demo_unlocks_before_snakemake_runs() -> None:
    """The demo recipe (make -n, nothing run) calls the unlock step, with the run's config,
    before its snakemake invocation."""
    out = subprocess.run(["make", "-n", "-W", "pyproject.toml", "demo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    unlock = [i for i, line in enumerate(out) if "cxrbs.core.stale_lock" in line]
    run = [i for i, line in enumerate(out) if "snakemake --cores" in line]
    assert unlock and run and unlock[0] < run[0]
    words = shlex.split(out[unlock[0]])
    assert words[-2:] == ["--configfile", "config/demo.yaml"]
    assert os.path.basename(words[3]) == "snakemake"
