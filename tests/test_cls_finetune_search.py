"""The fine-tuning recipe search (benchmarks/cls_finetune_search.py, issue 26) scores candidates
on validation images inside an outer fold's training part only: the outer fold's images never
reach a model, the inner folds keep patients whole, and every candidate is a valid setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cxrbs.cls.config import ClsTrainConfig
from cxrbs.cls.pipeline import pretrain
from cxrbs.core.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cls_finetune_search.py"
CANDIDATES = ROOT / "benchmarks" / "cls_finetune_candidates.yaml"
sys.path.insert(0, str(ROOT / "benchmarks"))
import cls_finetune_search as search  # noqa: E402


def _tb_results(root: Path, n_patients: int = 40, seed: int = 0) -> Layout:
    """A finished workflow folder in miniature: one TB set's stack, manifest and folds (two
    images for some patients), and a pretrained small CNN."""
    rng = np.random.default_rng(seed)
    layout = Layout(root / "results")
    rows, images = [], []
    yy, xx = np.mgrid[:32, :32]
    for p in range(n_patients):
        label = p % 2
        for k in range(1 + (p % 3 == 0)):
            img = rng.uniform(0.2, 0.4, (32, 32))
            if label:
                img += 0.5 * np.exp(-((yy - 16) ** 2 + (xx - 10) ** 2) / 20)
            images.append(np.clip(img, 0, 1))
            rows.append({"index": len(rows), "image_path": f"/data/CHNCXR_{p:04d}_{k}_{label}.png",
                         "patient_id": f"P{p:03d}", "label": label})
    frame = pd.DataFrame(rows)
    frame["fold"] = [int(pid[1:]) % 4 for pid in frame["patient_id"]]
    layout.data_dir("tb").mkdir(parents=True)
    frame.drop(columns="fold").to_csv(layout.manifest("tb"), index=False)
    frame.to_csv(layout.folds("tb"), index=False)
    stack = (np.stack(images)[:, None] * 65535).astype(np.uint16)
    np.save(layout.stack("tb"), stack)
    pretrain([layout.manifest("tb")], [layout.stack("tb")], model="small_cnn",
             model_kwargs={"widths": [4, 8]},
             train_cfg={"epochs": 1, "batch_size": 8, "collapse_check": False},
             seed=0, outdir=layout.cls_pretrain_model.parent, weights=None, threads=1,
             hog_floor=False)
    return layout


def test_inner_split_leaves_the_outer_fold_out_and_keeps_patients_whole(tmp_path: Path) -> None:
    layout = _tb_results(tmp_path)
    folds = pd.read_csv(layout.folds("tb"), dtype={"patient_id": str})
    stk, tab = search.inner_split(layout, "tb", "baseline", 1, seed=5, out=tmp_path / "s")
    inner = pd.read_csv(tab, dtype={"patient_id": str})
    outer_test = set(folds.loc[folds["fold"] == 1, "image_path"])
    assert outer_test and not outer_test & set(inner["image_path"])
    assert len(inner) == (folds["fold"] != 1).sum()
    assert inner.groupby("patient_id")["fold"].nunique().max() == 1  # patients stay whole
    assert sorted(inner["fold"].unique()) == [0, 1, 2, 3]
    stack, full = np.load(stk), np.load(layout.stack("tb"))
    assert np.array_equal(stack, full[(folds["fold"] != 1).to_numpy()])  # rows in the same order


def test_search_scores_inner_validation_images_beside_the_hog_floor(tmp_path: Path) -> None:
    layout = _tb_results(tmp_path)
    doc = {"common": {"seed": 3, "input_size": 32,
                      "finetune": {"epochs": 1, "batch_size": 8, "val_fraction": 0.25,
                                   "collapse_check": False}},
           "candidates": {"ref": {}, "adamw": {"finetune": {"optimizer": "adamw"}}}}
    cands = tmp_path / "cands.yaml"
    cands.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "search"
    res = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(tmp_path), "--candidates",
                          str(cands), "--dataset", "tb", "--outer", "0", "--threads", "1",
                          "--out", str(out), "--n-boot", "100"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    table = pd.read_csv(out / "search.csv", dtype={"patient": str})
    assert set(table["candidate"]) == {"ref", "adamw"}
    assert set(table["model"]) == {"deep", "deep_tta", "hog_floor"}
    folds = pd.read_csv(layout.folds("tb"))
    outer_test = {Path(p).stem for p in folds.loc[folds["fold"] == 0, "image_path"]}
    assert not outer_test & set(table["image"])  # only validation images were scored
    assert "minus_ref" in res.stdout and "adamw outer 0: val AUC" in res.stdout
    deep = table[(table["candidate"] == "ref") & (table["model"] == "deep")]
    assert deep["label"].nunique() == 2 and len(deep) == len(set(deep["image"]))


def test_every_candidate_is_a_valid_fine_tuning_setting() -> None:
    doc = yaml.safe_load(CANDIDATES.read_text())
    for spec in doc["candidates"].values():
        ClsTrainConfig.from_dict({**doc["common"]["finetune"], **spec.get("finetune", {})})
