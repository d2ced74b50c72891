"""bs.pretrained (issue 13, item 3): a bundled or given model replaces bone-suppression training.

The config check names the key and the bundled models; the workflow plans no train_bs job and
copies, evaluates and applies that model; best.json and the report say that training was skipped
and nothing was selected.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cxrbs.bs import bundled
from cxrbs.bs.choice import write_choice
from cxrbs.bs.pretrained import (
    ARCH,
    install_pretrained,
    pretrained_choice,
    pretrained_problem,
    resolve_pretrained,
)
from cxrbs.config_checks import check_config, semantic_problems
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.models import create_model
from cxrbs.models.checkpoint import header, save_checkpoint
from cxrbs.report.html_sections import bs_section
from test_bundled import bundle_dir  # noqa: F401  (the same tiny bundle fixture)

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
SKIPPED = "used; bone-suppression training skipped (bs.pretrained)"


def tiny_checkpoint(path: Path, *, kind: str = "bs") -> Path:
    """A few-hundred-parameter checkpoint in the one cxrbs format (residual: starts as identity)."""
    if kind == "bs":
        kwargs: dict[str, Any] = {"width": 4, "n_blocks": 1, "output": "residual"}
        model = create_model("resnet_bs", seed=0, **kwargs)
        meta = header(kind="bs", model_name="resnet_bs", model_kwargs=kwargs, input_size=64,
                      seed=0, versions={}, output_mode="residual")
    else:
        kwargs = {"widths": [4, 8, 8, 8]}
        model = create_model("small_cnn", **kwargs)
        meta = header(kind="cls", model_name="small_cnn", model_kwargs=kwargs, input_size=64,
                      seed=0, versions={}, class_names=["normal", "tb"])
    save_checkpoint(path, meta, model.state_dict())
    return path


def demo_with(pretrained: str, edit: Any = None) -> dict[str, Any]:
    config = copy.deepcopy(DEMO)
    config["bs"]["pretrained"] = pretrained
    if edit is not None:
        edit(config)
    return config


def without_training_data(config: dict[str, Any]) -> None:
    """What a user without JSRT writes: no bs_train set, no architectures."""
    del config["datasets"]["jsrt_bse"]
    del config["bs"]["architectures"]


# ----------------------------------------------------------------------------- (a) config check
def test_unknown_name_fails_naming_the_key_and_the_bundled_models(bundle_dir: Path) -> None:
    problems = semantic_problems(demo_with("no-such-model"))
    assert len(problems) == 1, problems
    assert problems[0].startswith("config key bs.pretrained: 'no-such-model' is neither")
    assert "bundled: tiny-bs" in problems[0]
    with pytest.raises(CxrbsError) as info:
        check_config(demo_with("no-such-model"), config_files=["my.yaml"])
    line = [ln for ln in str(info.value).splitlines() if "bs.pretrained" in ln]
    assert len(line) == 1 and "my.yaml" in str(info.value)


def test_bundled_name_and_existing_file_pass(bundle_dir: Path, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    for value in ("tiny-bs", str(ckpt)):
        check_config(demo_with(value))
        check_config(demo_with(value, without_training_data))  # no JSRT, no architectures
    assert resolve_pretrained("tiny-bs") == bundle_dir / "tiny-bs.pt"
    assert resolve_pretrained(str(ckpt)) == ckpt


def test_missing_bundled_file_and_nothing_to_evaluate_are_named(bundle_dir: Path) -> None:
    (bundle_dir / "tiny-bs.pt").unlink()
    assert "tiny-bs.pt is missing; reinstall cxrbs" in str(pretrained_problem("tiny-bs"))

    def no_pairs(config: dict[str, Any]) -> None:
        without_training_data(config)
        del config["datasets"]["scanner2"]

    problems = semantic_problems(demo_with(str(ROOT / "README.md"), no_pairs))
    assert any("no data set has role bs_test" in p for p in problems), problems


def test_architectures_stay_required_without_pretrained() -> None:
    config = copy.deepcopy(DEMO)
    del config["bs"]["architectures"]
    with pytest.raises(CxrbsError, match="config key bs: 'architectures' is a required property"):
        check_config(config)


# ----------------------------------------------------------------------------- the package part
def test_install_checks_the_checkpoint_and_the_checksum(bundle_dir: Path, tmp_path: Path) -> None:
    dest, info_path = tmp_path / "out" / "best.pt", tmp_path / "out" / "pretrained.json"
    info = install_pretrained("tiny-bs", dest, info_path, image_size=64)
    assert dest.read_bytes() == (bundle_dir / "tiny-bs.pt").read_bytes()
    assert info["bundled"] and info["model_name"] == "resnet_bs"
    assert json.loads(info_path.read_text())["sha256"] == bundled.get_bundled("tiny-bs").sha256
    cls = tiny_checkpoint(tmp_path / "classifier.pt", kind="cls")
    with pytest.raises(CxrbsError, match="bs.pretrained needs a bone-suppression checkpoint"):
        install_pretrained(str(cls), tmp_path / "x" / "best.pt", tmp_path / "x" / "p.json")
    weights = bundle_dir / "tiny-bs.pt"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CxrbsError, match="fails its checksum"):
        install_pretrained("tiny-bs", tmp_path / "y" / "best.pt", tmp_path / "y" / "p.json")
    assert not (tmp_path / "x" / "best.pt").exists()  # checked before anything is written


def _summary(pretrained_psnr: dict[str, float]) -> pd.DataFrame:
    rows = []
    for test, value in pretrained_psnr.items():
        rows += [{"arch": ARCH, "test_set": test, "metric": "psnr", "mean": value},
                 {"arch": "identity", "test_set": test, "metric": "psnr", "mean": 30.0}]
    return pd.DataFrame(rows)


def test_choice_records_one_candidate_and_the_report_says_so(tmp_path: Path) -> None:
    info = {"pretrained": "tiny-bs", "bundled": True, "card": "tiny-bs.md", "input_size": 64,
            "image_size": 64}
    summary = _summary({"heldout_test": 31.0, "des": 29.0})
    layout = Layout(tmp_path / "results")
    choice = write_choice(layout.bs_best, summary, metric="psnr", pretrained=info)
    assert json.loads(layout.bs_best.read_text(encoding="utf-8")) == choice  # written whole
    assert choice == {**pretrained_choice(summary, info, metric="psnr"),
                      "checkpoint": "results/bs/models/pretrained/best.pt"}
    assert layout.chosen_checkpoint() == layout.bs_checkpoint(ARCH)
    assert choice["arch"] == ARCH and choice["training_skipped"] and choice["pretrained"] == "tiny-bs"
    assert choice["selection_set"] is None and not choice["test_sets_used_for_selection"]
    assert choice["test_sets"] == ["des", "heldout_test"] and choice["test_set"] == "des"
    assert choice["checkpoint"] == "results/bs/models/pretrained/best.pt"
    assert not choice["beats_identity"] and "on des" in choice["reason"]
    html = bs_section(layout)
    assert f"Pretrained model tiny-bs {SKIPPED}" in html
    assert "Mean psnr: des " in html and "heldout_test " in html
    assert "does NOT beat the identity baseline" in html and "Selected model" not in html


# ----------------------------------------------------------------------------- (b) the plan
def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_dry_run_trains_nothing_and_uses_the_pretrained_model(tmp_path: Path) -> None:
    from test_workflow import output, planned_jobs, snakemake

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    result = snakemake("-n", "--configfile", str(_write(tmp_path, demo_with(str(ckpt)))),
                       workdir=tmp_path / "run")
    assert result.returncode == 0, output(result)[-5000:]
    jobs = planned_jobs(result)
    rules = {rule for rule, _ in jobs}
    assert "train_bs" not in rules
    assert {"use_pretrained_bs", "evaluate_bs", "select_bs", "paired_bs", "suppress_tb"} <= rules
    evaluated = {wc for rule, wc in jobs if rule == "evaluate_bs"}
    # every bs_test set and the within-institution test split; no validation (nothing selected)
    assert evaluated == {"arch=pretrained, testset=scanner2", "arch=pretrained, testset=heldout_test"}


def test_dry_run_without_training_data_needs_no_pairs(tmp_path: Path) -> None:
    from test_workflow import output, planned_jobs, snakemake

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    config = demo_with(str(ckpt), without_training_data)
    result = snakemake("-n", "--configfile", str(_write(tmp_path, config)),
                       workdir=tmp_path / "run")
    assert result.returncode == 0, output(result)[-5000:]
    jobs = planned_jobs(result)
    rules = {rule for rule, _ in jobs}
    assert not rules & {"train_bs", "prepare_bs_pairs"}
    assert {wc for rule, wc in jobs if rule == "evaluate_bs"} == {"arch=pretrained, testset=scanner2"}
    assert "dataset=jsrt_bse" not in {wc for _, wc in jobs}


def test_workflow_refuses_an_unknown_model_before_any_job(tmp_path: Path) -> None:
    from test_workflow import output, snakemake

    result = snakemake("-n", "--configfile", str(_write(tmp_path, demo_with("no-such-model"))),
                       workdir=tmp_path / "run")
    text = output(result)
    assert result.returncode != 0 and "config key bs.pretrained: 'no-such-model'" in text
    assert "bundled:" in text and not (tmp_path / "run" / "results").exists()


# ----------------------------------------------------------------------------- (c) a real run
@pytest.mark.slow
def test_bone_suppression_part_runs_with_a_pretrained_model(tmp_path: Path) -> None:
    """~2.5 min on 2 busy cores: fetch + build the demo's sets, evaluate, select, suppress."""
    from test_workflow import output, snakemake

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    run = tmp_path / "run"
    result = snakemake("results/bs/best.json", "results/bs/eval/paired_vs_identity.json",
                       "results/suppressed/shenzhen/manifest.csv", "--cores", "2",
                       "--configfile", str(_write(tmp_path, demo_with(str(ckpt)))), workdir=run)
    assert result.returncode == 0, output(result)[-5000:]
    layout = Layout(run / "results")
    assert sorted(p.parent.name for p in (run / "results/bs/models").glob("*/best.pt")) == [ARCH]
    assert not list((run / "results/bs/models").glob("*/last.pt"))  # nothing trained
    assert layout.bs_checkpoint(ARCH).read_bytes() == ckpt.read_bytes()
    best = json.loads(layout.bs_best.read_text())
    assert best["training_skipped"] and best["pretrained"] == str(ckpt)
    verdict = json.loads(layout.bs_paired_verdict.read_text())  # the statistics: paired_bs
    assert set(verdict["paired_vs_identity"]) == {"scanner2", "heldout_test"}
    assert layout.suppressed_stack("shenzhen").is_file()
    summary = pd.read_csv(layout.bs_summary)
    assert set(summary["arch"]) == {ARCH, "identity"}
    assert "validation" not in set(summary["test_set"])
    assert f"Pretrained model {ckpt} {SKIPPED}" in bs_section(layout)
