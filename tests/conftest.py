"""Shared fixtures: paths to the real data beside the repository (skipped when absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public chest X-rays in ../shared/data; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The complete demo DAG, once per session, in a temporary folder (a few minutes on 2 cores).

    Shared by the workflow, rerun, browser and SLURM tests; the user's own results/ is never touched.
    """
    workdir = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
         str(workdir), "--cores", "2", "--configfile", str(ROOT / "config" / "demo.yaml")],
        capture_output=True, text=True, timeout=1800, cwd=ROOT,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir
