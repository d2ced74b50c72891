"""The README's "Quickstart: your own radiograph" block, run with bash exactly as written.

The block between ``<!-- quickstart:begin -->`` and ``<!-- quickstart:end -->`` runs in a temporary
copy of the repository's files (``git ls-files``, tracked and untracked-not-ignored; no .venv),
with only the placeholder ``path/to/chest.dcm`` replaced by a real file: the shared sample DICOM
when ../shared/data is present, else a phantom PNG written by ``cxrbs phantoms``.

``.venv`` in the copy is a symlink to the virtual environment running these tests, so ``make
install`` does not install anything; file times are kept in the copy, so make sees the same
stamp (``.venv/.installed``) against ``pyproject.toml`` as the real checkout. When make would
reinstall (``make -q install`` says the stamp is older than pyproject.toml), the ``make install``
line is skipped rather than letting it pip-install into the shared environment: it is replaced
by ``true``, and only then. The copy's ``src`` goes first on PYTHONPATH, so ``cxrbs`` runs the
code under test, not whatever the environment's editable install points at.

Until a bundled model ships, ``cxrbs suppress`` without ``--model`` has nothing to load: the
suppress line is then skipped (``cxrbs models --json`` lists no bundled model) and only the set-up
lines are checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "path/to/chest.dcm"
VENV = Path(sys.executable).parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("make") is None
                                or not (VENV / "pyvenv.cfg").exists(),
                                reason="needs bash, make and a virtual environment")


def quickstart_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- quickstart:begin -->\s*```bash\n(.*?)```\s*<!-- quickstart:end -->",
                      text, re.S)
    assert match, "README.md has no quickstart block between the markers"
    return [line for line in match.group(1).splitlines() if line.strip()]


def copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if name.startswith(".venv") or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    (dest / ".venv").symlink_to(VENV)
    return dest


def env_for(copy: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(copy / "src"), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def run_bash(lines: list[str], copy: Path) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    return subprocess.run(["bash", "-c", script], cwd=copy, env=env_for(copy),
                          capture_output=True, text=True, timeout=600)


def prepared(lines: list[str], copy: Path) -> list[str]:
    """The block as written; `make install` replaced by `true` only if make would reinstall."""
    up_to_date = subprocess.run(["make", "-q", "install"], cwd=copy, env=env_for(copy),
                                capture_output=True).returncode == 0
    return [("true  # " + line if line.strip() == "make install" and not up_to_date else line)
            for line in lines]


def bundled_models() -> list[object]:
    out = subprocess.run([sys.executable, "-m", "cxrbs.cli", "models", "--json"],
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def test_block_is_the_three_documented_lines() -> None:
    assert quickstart_lines() == ["make install", "source .venv/bin/activate",
                                  f"cxrbs suppress {PLACEHOLDER} -o suppressed/"]


def test_setup_lines_put_cxrbs_on_the_path(tmp_path: Path) -> None:
    copy = copy_repo(tmp_path / "clone")
    setup = [line for line in quickstart_lines() if not line.startswith("cxrbs ")]
    done = run_bash([*prepared(setup, copy), "command -v cxrbs", "cxrbs --version"], copy)
    assert done.returncode == 0, done.stderr
    # `make install` may print "Nothing to be done" first: find the `command -v` line
    assert any(line.endswith("/bin/cxrbs") for line in done.stdout.splitlines()), done.stdout


def test_quickstart_suppresses_a_radiograph(tmp_path: Path) -> None:
    if not bundled_models():
        pytest.skip("no bundled model yet (`cxrbs models --json` lists none): suppress without "
                    "--model has nothing to load")
    copy = copy_repo(tmp_path / "clone")
    sample = SHARED_DATA / "dicom" / "RG1_UNCR.dcm"  # conftest's shared sample data
    if not sample.is_file():
        phantoms = tmp_path / "phantoms"
        subprocess.run([sys.executable, "-m", "cxrbs.cli", "-q", "phantoms", str(phantoms),
                        "--n", "1", "--size", "256"], env=env_for(copy), check=True,
                       capture_output=True, timeout=300)
        sample = sorted(phantoms.rglob("*.png"))[0]
    lines = [line.replace(PLACEHOLDER, str(sample)) for line in quickstart_lines()]
    done = run_bash(prepared(lines, copy), copy)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    outputs = [p for p in (copy / "suppressed").rglob("*") if p.is_file()]
    assert outputs and all(p.stat().st_size > 0 for p in outputs)
