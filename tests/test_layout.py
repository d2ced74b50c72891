"""core.layout is the package's only copy of the results/ tree: it must match what the rules write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout, results_root_of

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.fixture(scope="module")
def dag_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every output file of the demo DAG, from Snakemake's own dry-run summary."""
    workdir = tmp_path_factory.mktemp("dag")
    proc = subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--configfile",
         str(ROOT / "config" / "demo.yaml"), "--directory", str(workdir), "-n", "--summary"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    lines = [line.split("\t")[0] for line in proc.stdout.splitlines() if "\t" in line]
    return set(lines[1:])


def test_layout_paths_are_the_rules_outputs(dag_files: set[str]) -> None:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
    archs = sorted(config["bs"]["architectures"])
    tb = sorted(n for n, s in config["datasets"].items() if s["role"] == "tb")
    test_sets = sorted(n for n, s in config["datasets"].items() if s["role"] == "bs_test")
    lay = Layout()
    expected = [lay.bs_best, lay.bs_summary, lay.bs_paired, lay.bs_paired_verdict,
                lay.cls_metrics, lay.cls_comparison, lay.cls_pretrain_history,
                lay.cls_pretrain_summary, lay.feature_space, lay.report]
    for arch in archs:
        expected += [lay.bs_checkpoint(arch)]
        expected += [lay.bs_eval(arch, t) for t in test_sets]
    for name in tb:
        expected += [lay.stack(name), lay.manifest(name), lay.folds(name),
                     lay.suppressed_stack(name), lay.cls_fold_model(name, "baseline", 0),
                     lay.cls_fold_predictions(name, "bone_suppressed", 0)]
    missing = sorted(str(p) for p in expected if str(p) not in dag_files)
    assert not missing, f"core.layout names paths no rule writes: {missing}"


def test_layout_roots_and_relative_paths(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "results")
    assert lay.workflow_dir == tmp_path
    assert lay.relative(lay.bs_checkpoint("resnet_bs")) == "results/bs/models/resnet_bs/best.pt"
    assert results_root_of(lay.bs_summary) == lay.root
    assert lay.relative(Path("/elsewhere/x.pt")) == "/elsewhere/x.pt"


def _best(lay: Layout, choice: object) -> None:
    lay.bs_best.parent.mkdir(parents=True, exist_ok=True)
    lay.bs_best.write_text(json.dumps(choice), encoding="utf-8")


def test_chosen_checkpoint_is_the_one_best_json_names(tmp_path: Path) -> None:
    """One reader of best.json: its checkpoint (relative to the workflow folder), else its arch."""
    lay = Layout(tmp_path / "results")
    _best(lay, {"arch": "resnet_bs", "checkpoint": "results/bs/models/resnet_bs/best.pt"})
    assert lay.chosen_checkpoint() == lay.bs_checkpoint("resnet_bs")
    assert lay.bs_arch_of(lay.chosen_checkpoint()) == "resnet_bs"
    _best(lay, {"arch": "unet_bs"})  # no checkpoint field: the arch's slot
    assert lay.chosen_checkpoint() == lay.bs_checkpoint("unet_bs")
    _best(lay, {"arch": "x", "checkpoint": "/elsewhere/m.pt"})
    assert lay.chosen_checkpoint() == Path("/elsewhere/m.pt")
    assert Layout.of_best(lay.bs_best) == lay


def test_chosen_checkpoint_among_declared_inputs(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "results")
    candidates = [f"results/bs/models/{a}/best.pt" for a in ("ae_bs", "resnet_bs")]
    _best(lay, {"arch": "resnet_bs", "checkpoint": "results/bs/models/resnet_bs/best.pt"})
    assert lay.chosen_checkpoint(candidates) == Path(candidates[1])
    _best(lay, {"arch": "ae_bs", "checkpoint": "old/place/best.pt"})  # by arch when no path fits
    assert lay.chosen_checkpoint(candidates) == Path(candidates[0])
    _best(lay, {"arch": "rl_bs"})
    with pytest.raises(CxrbsError, match="none of the candidate checkpoints"):
        lay.chosen_checkpoint(candidates)


@pytest.mark.parametrize("text", ["{not json", "[]", "{}"])
def test_chosen_checkpoint_refuses_what_the_workflow_did_not_write(tmp_path: Path,
                                                                   text: str) -> None:
    lay = Layout(tmp_path / "results")
    lay.bs_best.parent.mkdir(parents=True)
    lay.bs_best.write_text(text, encoding="utf-8")
    with pytest.raises(CxrbsError, match="is not a model choice written by the workflow.*--model"):
        lay.chosen_checkpoint()


def test_package_has_no_other_results_paths() -> None:
    """`git grep '"results/' src/` finds paths only in core/layout.py (issue 11)."""
    offenders = []
    for path in (ROOT / "src" / "cxrbs").rglob("*.py"):
        if path.name == "layout.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if '"results/' in line or "'results/" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
