"""Issue 22 item 5: a pretrained model's own training / validation patients (its split file ships
beside it) are removed from the workflow's heldout_test and validation pairs, and the report says
how many."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrbs.bs import bundled
from cxrbs.bs.evaluate import evaluate_model_on_pairs
from cxrbs.bs.fullres import fullres_files
from cxrbs.bs.pretrained import pretrained_split, seen_patients
from cxrbs.core.atomic import write_csv
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.report.html_summary import pretrained_overlap

ROOT = Path(__file__).resolve().parents[1]


def _model_split(path: Path) -> Path:
    pd.DataFrame({"name": ["P1.png", "P2.png", "P3.png", "P9.png"],
                  "patient_id": ["P1", "P2", "P3", "P9"],
                  "split": ["train", "val", "test", "train"]}).to_csv(path, index=False)
    return path


def _workflow_split(folder: Path) -> Path:
    """results/bs/data/split.csv: P1 (model train) and P3 (model test) in test, P2 in val."""
    split = pd.DataFrame({"dataset": ["jsrt"] * 6, "index": range(6),
                          "patient_id": ["P1", "P3", "P4", "P2", "P5", "P6"],
                          "pair_id": [f"p{i}" for i in range(6)],
                          "split": ["test", "test", "test", "val", "val", "train"]})
    write_csv(folder / "split.csv", split)
    return folder / "split.csv"


def test_seen_patients_are_train_and_val_of_the_model_split(tmp_path: Path) -> None:
    assert seen_patients(_model_split(tmp_path / "m.split.csv")) == {"P1", "P2", "P9"}
    assert seen_patients(None) == set()
    # a checkpoint path: <stem>.split.csv beside it, else nothing known
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    assert pretrained_split(str(ckpt)) == tmp_path / "m.split.csv"
    assert pretrained_split(str(tmp_path / "other.pt")) is None and pretrained_split(None) is None


def test_the_shipped_model_has_its_split_file() -> None:
    model = bundled.default_bundled()
    assert model is not None
    path = pretrained_split(model.name)
    assert path == model.card.with_suffix(".split.csv") and path.is_file()
    assert len(seen_patients(path)) > 50  # ~98 BSE-JSRT patients (train + val)


def test_evaluation_leaves_the_models_patients_out(tmp_path: Path) -> None:
    split = _workflow_split(tmp_path)
    rng = np.random.default_rng(0)
    test = rng.random((3, 2, 64, 64), dtype=np.float32)
    np.save(tmp_path / "test.npy", test)
    np.save(tmp_path / "val.npy", test[:2])
    seen = seen_patients(_model_split(tmp_path / "m.split.csv"))
    full = evaluate_model_on_pairs(None, tmp_path / "test.npy", split, arch="identity",
                                   test_set="heldout_test")
    kept = evaluate_model_on_pairs(None, tmp_path / "test.npy", split, arch="identity",
                                   test_set="heldout_test", exclude_patients=seen)
    assert list(full["name"]) == ["p0", "p1", "p2"]
    assert list(kept["name"]) == ["p1", "p2"]  # P1 (model train) out; P3 (model test) stays
    # the kept rows are scored on their own images, not shifted by the removal
    cols = ["mae", "psnr"]
    np.testing.assert_allclose(kept[cols].to_numpy(), full[cols].to_numpy()[1:])
    val = evaluate_model_on_pairs(None, tmp_path / "val.npy", split, arch="identity",
                                  test_set="validation", exclude_patients=seen)
    assert list(val["name"]) == ["p4"]
    with pytest.raises(CxrbsError, match="nothing held out is left"):
        evaluate_model_on_pairs(None, tmp_path / "val.npy", split, arch="identity",
                                test_set="validation", exclude_patients={"P2", "P5"})


def test_fullres_files_leave_the_models_patients_out(tmp_path: Path) -> None:
    split = _workflow_split(tmp_path)
    manifest = pd.DataFrame({"index": range(6), "patient_id": ["P1", "P3", "P4", "P2", "P5", "P6"],
                             "pair_id": [f"p{i}" for i in range(6)],
                             "image_path": [f"s{i}.png" for i in range(6)],
                             "target_path": [f"t{i}.png" for i in range(6)]})
    write_csv(tmp_path / "jsrt" / "manifest.csv", manifest)
    manifests = {"jsrt": tmp_path / "jsrt" / "manifest.csv"}
    files = fullres_files(manifests, split_csv=split, part="test", exclude_patients={"P1", "P2"})
    assert [f[0] for f in files] == ["p1", "p2"]
    assert [f[0] for f in fullres_files(manifests, exclude_patients={"P1"})][:2] == ["p1", "p2"]


def test_report_says_how_many_were_removed(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "results")
    card = tmp_path / "bundled" / "m1.md"
    card.parent.mkdir(parents=True)
    card.write_text("card")
    _model_split(card.with_suffix(".split.csv"))
    _workflow_split(layout.bs_dir / "data")
    write_csv(layout.manifest("jsrt"), pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4", "P5",
                                                                    "P6"]}))
    config = {"datasets": {"jsrt": {"role": "bs_train"}}}
    best = {"training_skipped": True, "pretrained": "m1", "pretrained_model": {"card": str(card)}}
    assert pretrained_overlap(layout, config, best) == [
        "Pretrained model m1 was trained or validated on 2 patients of jsrt: 1 of 3 heldout_test "
        "patients and 1 of 2 validation patients were removed before scoring, so the scores "
        "there are held-out results."]


def test_workflow_declares_the_split_file_as_an_input_of_the_heldout_evaluation(
        tmp_path: Path) -> None:
    from test_pretrained_bs import _write, demo_with
    from test_workflow import output, snakemake

    model = bundled.default_bundled()
    assert model is not None
    result = snakemake("-n", "--configfile", str(_write(tmp_path, demo_with(model.name))),
                       workdir=tmp_path / "run")
    text = output(result)
    assert result.returncode == 0, text[-5000:]
    split = str(model.card.with_suffix(".split.csv"))
    jobs = [j for j in re.split(r"\n(?=rule \w+:)", text)
            if j.startswith(("rule evaluate_bs:", "rule evaluate_identity:"))]
    heldout = [j for j in jobs if "testset=heldout_test" in j]
    others = [j for j in jobs if "testset=heldout_test" not in j]
    assert heldout and all(split in j for j in heldout)
    assert others and not any(split in j for j in others)
