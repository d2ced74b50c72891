"""The duration estimate a run prints before its first job (issue 26): jobs counted from the
config and the finished models, speed from earlier jobs' histories or timed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cxrbs.core.layout import Layout
import json

from cxrbs.estimate import (
    dataset_size,
    estimate_text,
    print_estimate,
    same_recipe,
    stages,
    timed_rate,
)


def _config(n_tb: int = 400, epochs: int = 10) -> dict[str, Any]:
    return {
        "image_size": 64,
        "datasets": {
            "tb": {"role": "tb", "synthetic": {"kind": "shenzhen", "n": n_tb}},
            "pre": {"role": "pretrain", "synthetic": {"kind": "cxr8", "n": 1000}},
            "later": {"role": "tb", "url": "https://example.org/x.zip"},
        },
        "cls": {"model": "small_cnn", "input_size": 32, "folds": 4, "repeats": 2,
                "variants": ["baseline", "bone_suppressed"],
                "pretrain": {"epochs": epochs, "val_fraction": 0.2},
                "finetune": {"epochs": epochs, "val_fraction": 0.25, "batch_size": 4}},
        "resources": {"train_threads": 1},
    }


def test_sizes_come_from_a_manifest_a_folder_or_the_synthetic_count(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.dcm", "notes.txt"):
        (folder / name).touch()
    assert dataset_size("x", {"path": str(folder)}, tmp_path) == 2
    assert dataset_size("x", {"synthetic": {"n": 7}}, tmp_path) == 7
    assert dataset_size("x", {"url": "https://example.org"}, tmp_path) is None
    manifest = tmp_path / "results/data/x/manifest.csv"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame({"image_path": ["p"] * 5}).to_csv(manifest, index=False)
    assert dataset_size("x", {"synthetic": {"n": 7}}, tmp_path) == 5


def test_jobs_are_counted_and_finished_ones_left_out(tmp_path: Path) -> None:
    found, unknown = stages(_config(), tmp_path, {"pretrain_cls": 2})
    assert unknown == ["later"]
    pre, fine = found
    assert (pre.jobs, pre.threads) == (1, 2) and (fine.jobs, fine.threads) == (16, 1)
    # 3/4 of 400 images per fold, 3/4 of them trained on and 1/4 scored (a third of a step)
    assert fine.passes_each == pytest.approx(10 * 300 * (0.75 + 0.25 / 3))
    done = Layout(tmp_path / "results").cls_fold_model("tb", "bone_suppressed", 3, 1)
    done.parent.mkdir(parents=True)
    done.touch()
    assert stages(_config(), tmp_path)[0][1].left == 15


def test_the_estimate_uses_logged_speeds_and_skips_small_runs(tmp_path: Path) -> None:
    assert estimate_text(_config(n_tb=8, epochs=1), tmp_path, 2) is None
    layout = Layout(tmp_path / "results")
    for path, rate in ((layout.cls_pretrain_model, 50.0),
                       (layout.cls_fold_model("tb", "baseline", 0), 10.0)):
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"epoch": [1, 2, 3], "images_per_s": [rate, rate, 4 * rate]}).to_csv(
            path.parent / "history.csv", index=False)
    layout.cls_pretrain_model.unlink(missing_ok=True)
    text = estimate_text(_config(), tmp_path, 2, time_here=False)
    assert text is not None
    fine = 10 * 300 * (0.75 + 0.25 / 3) / 10.0 * 8  # 16 jobs, 2 at a time, 10 images/s
    pre = 10 * 1000 * (0.8 + 0.2 / 3) / 50.0
    assert f"about {(fine + pre) / 60:.0f} min" in text.splitlines()[0]
    assert "16 of 16 job(s)" in text and "later" in text


def _finished(model: Path, summary: dict[str, Any], rate: float = 10.0) -> None:
    model.parent.mkdir(parents=True, exist_ok=True)
    model.touch()
    (model.parent / "train_summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"epoch": [1], "images_per_s": [rate]}).to_csv(model.parent / "history.csv",
                                                                index=False)


def test_a_changed_recipe_counts_its_reruns_and_its_own_speed(tmp_path: Path) -> None:
    """A finished job trained with other settings reruns (Snakemake's params trigger): it is
    counted as left, and its speed (another precision, say) is not used."""
    layout = Layout(tmp_path / "results")
    cfg = _config()
    fine = cfg["cls"]["finetune"]
    same = layout.cls_fold_model("tb", "baseline", 0)
    other = layout.cls_fold_model("tb", "baseline", 1)
    _finished(same, {"settings": {**fine, "seed": 3, "threads": 1}}, rate=10.0)
    _finished(other, {"settings": {**fine, "epochs": 99}}, rate=1000.0)
    fine_stage = stages(cfg, tmp_path)[0][1]
    assert fine_stage.left == 15
    assert fine_stage.histories == [same.parent / "history.csv"] + [
        m.parent / "history.csv" for m in fine_stage.models[2:]]
    text = estimate_text(cfg, tmp_path, 2, time_here=False)
    assert text is not None and "15 of 16 job(s)" in text and "at 10.0 images/s" in text
    # summaries from before the settings were recorded: precision and epochs run still tell
    assert same_recipe(same.parent, {"amp": "bf16"}) is True  # recorded settings lack amp
    (other.parent / "train_summary.json").write_text(json.dumps(
        {"amp": "none", "epochs_run": 8, "stopped_early": False}))
    assert same_recipe(other.parent, {"amp": "bf16", "epochs": 8}) is False
    assert same_recipe(other.parent, {"amp": "none", "epochs": 24}) is False
    assert same_recipe(other.parent, {"amp": "none", "epochs": 8}) is True
    (other.parent / "train_summary.json").write_text(json.dumps(
        {"amp": "none", "epochs_run": 3, "stopped_early": True}))
    assert same_recipe(other.parent, {"amp": "none", "epochs": 24}) is True
    assert same_recipe(tmp_path / "nothing", {"amp": "none"}) is None


def test_a_first_run_times_the_classifier_here() -> None:
    rate = timed_rate(_config(), 1, steps=1)
    assert 0 < rate < 1e6
    for amp in ("bf16", "fp16"):  # the configured precision and layout; fp16 timed as fp32
        settings = {"batch_size": 2, "amp": amp, "channels_last": True}
        assert 0 < timed_rate(_config(), 1, steps=1, settings=settings) < 1e6


def test_printing_never_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    print_estimate({"cls": {}}, tmp_path, 2)  # no datasets: logged, not raised
    print_estimate(_config(n_tb=8, epochs=1), tmp_path, 2)
    assert capsys.readouterr().out == ""
