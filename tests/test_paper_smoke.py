"""The paper-scale configuration runs (issue 13, item 5): config/paper_smoke.yaml has
config/config.yaml's model sizes and image size (the study's four bone-suppression models with
ResNet-BS 64 x 16 blocks, VGG-16 at 256, 4500 augmented pairs) and one short epoch each, on the
real samples in ../shared/data, so the real configuration cannot rot unseen."""

from __future__ import annotations

import json
import subprocess
import sys
import os
from pathlib import Path

import pytest
import yaml

from cxrbs.config_checks import check_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config" / "paper_smoke.yaml"
PAPER = ROOT / "config" / "config.yaml"


def test_smoke_config_has_the_paper_sizes() -> None:
    smoke, paper = (yaml.safe_load(p.read_text()) for p in (SMOKE, PAPER))
    check_config(smoke)
    assert smoke["image_size"] == paper["image_size"]
    assert smoke["bs"]["architectures"] == paper["bs"]["architectures"]
    assert smoke["bs"]["augment"]["n_pairs"] == paper["bs"]["augment"]["n_pairs"]
    assert smoke["bs"]["train"]["crop_size"] == paper["bs"]["train"]["crop_size"]
    assert smoke["cls"]["model"] == paper["cls"]["model"]
    assert smoke["bs"]["train"]["epochs"] == 1 and smoke["cls"]["repeats"] == 1


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.skipif(os.environ.get("CXRBS_PAPER_SMOKE") != "1",
                    reason="paper-scale smoke run (~6-10 min, GB of VGG checkpoints): .ci/run runs "
                           "it as its own step with CXRBS_PAPER_SMOKE=1, outside `make test`")
def test_paper_scale_workflow_runs_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(SMOKE.read_text())
    for spec in config["datasets"].values():  # ../shared/data: the fixture's folder
        spec["path"] = spec["path"].replace("../shared/data", str(shared_data))
    configfile = tmp_path / "paper_smoke.yaml"
    configfile.write_text(yaml.safe_dump(config, allow_unicode=True))
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
         str(workdir), "--cores", "2", "--configfile", str(configfile)],
        capture_output=True, text=True, timeout=1500, cwd=ROOT,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    results = workdir / "results"
    for name in ("report.html", "cls/comparison.csv", "bs/best.json"):
        assert (results / name).is_file(), name
    best = json.loads((results / "bs" / "best.json").read_text())
    assert best  # the selection ran over the paper-sized models
