"""Deployable as a Snakemake module (issue 21): `snakedeploy deploy-workflow URL DEST` writes a
Snakefile in DEST that pulls this workflow in with ``module`` + ``use rule * from``, and the
user's config beside it. The workflow must then plan, and run its jobs, from DEST: a path that
assumes the repository root as the working directory (a script, a schema, an env file, a
bundled model) fails here. The module points at this checkout instead of a GitHub tag."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

#: What snakedeploy writes (module name, config handed over, every rule imported, prefixed).
MODULE_SNAKEFILE = """\
configfile: "config/config.yaml"


module cxrbs:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from cxrbs as cxrbs_*
"""


def _deploy(dest: Path) -> Path:
    (dest / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "demo.yaml", dest / "config" / "config.yaml")
    (dest / "Snakefile").write_text(MODULE_SNAKEFILE.format(snakefile=ROOT / "Snakefile"))
    return dest


def _run(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SNAKEMAKE, "--cores", "1", *args], cwd=dest, capture_output=True,
                          text=True, timeout=600)


def test_the_demo_plans_from_a_module_deployment(tmp_path: Path) -> None:
    dest = _deploy(tmp_path / "deployed")
    res = _run(dest, "-n")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout + res.stderr
    for rule in ("cxrbs_train_bs", "cxrbs_finetune_cls", "cxrbs_report"):
        assert rule in text, f"{rule} is not planned from the module deployment"


def test_jobs_run_from_a_module_deployment_and_write_only_there(tmp_path: Path) -> None:
    """The data stage of one small data set really runs: its script, the schema check at start,
    the phantom generator; outputs and logs land in the deployment, not in the checkout."""
    dest = _deploy(tmp_path / "deployed")
    targets = ["results/data/scanner2/manifest.csv", "results/data/scanner2/images.npy"]
    before = _snapshot()
    res = _run(dest, *targets)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for target in targets:
        assert (dest / target).is_file()
    assert (dest / "logs" / "data" / "scanner2.log").is_file()
    assert _snapshot() == before, "a job wrote into the checkout instead of the deployment"


def _snapshot() -> dict[str, int]:
    """Files (and their mtimes) a job could write into the checkout by mistake."""
    out: dict[str, int] = {}
    for top in ("results", "logs", "resources"):
        for path in (ROOT / top).rglob("*") if (ROOT / top).is_dir() else ():
            if path.is_file():
                out[str(path)] = path.stat().st_mtime_ns
    return out
