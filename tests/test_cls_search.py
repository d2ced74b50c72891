"""The from-scratch classifier search (benchmarks/cls_pretrain_search.py) runs the workflow's
pretraining on a class-folder set and scores it beside the HOG floor; the chosen candidate is
exactly what config/shared_cpu.yaml pretrains with. Tiny synthetic PNGs stand in for ChestX-ray8."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import yaml

from cxrbs.cls.config import ClsTrainConfig
from cxrbs.models import create_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cls_pretrain_search.py"
CANDIDATES = ROOT / "benchmarks" / "cls_pretrain_candidates.yaml"


def _class_folders(root: Path, n_patients: int = 16, seed: int = 0) -> Path:
    """normal/ and pneumonia/ with ChestX-ray8 names (patient id = first 8 digits); 2 images
    per patient; class 1 carries a bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    for p in range(n_patients):
        label = p % 2
        folder = root / ("pneumonia" if label else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            img = rng.uniform(40, 90, (48, 48))
            if label:
                cy, cx = rng.uniform(10, 38, 2)
                img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30)
            iio.imwrite(folder / f"{10000000 + p:08d}_{k:03d}.png", np.clip(img, 0, 255).astype(np.uint8))
    return root


def test_search_runs_candidates_on_the_patient_split_and_scores_them(tmp_path: Path) -> None:
    data = _class_folders(tmp_path / "cxr8")
    tiny = {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.002, "amp": "none",
            "collapse_check": False}
    doc = {
        "common": {"seed": 3, "image_size": 48, "train": {"val_fraction": 0.25}},
        "candidates": {
            "cnn": {"model": "small_cnn", "model_kwargs": {"widths": [4, 8]}, "input_size": 32,
                    "train": {**tiny, "mixup": 0.2, "cutmix": 1.0, "ema_decay": 0.9}},
            "res": {"model": "resnet18", "input_size": 32,
                    "model_kwargs": {"widths": [4, 8, 8, 8], "blocks": [1, 1, 1, 1]},
                    "train": tiny},
        },
    }
    cands = tmp_path / "candidates.yaml"
    cands.write_text(yaml.safe_dump(doc))
    out = tmp_path / "search"
    run = subprocess.run([sys.executable, str(SCRIPT), "--candidates", str(cands), "--data", str(data),
                          "--out", str(out), "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    table = pd.read_csv(out / "search.csv")
    assert table["candidate"].tolist() == ["cnn", "res"]
    for col in ("val_auc", "val_auc_low", "val_auc_high", "tta_val_auc", "hog_auc"):
        assert table[col].between(0, 1).all(), col
    assert (table["val_auc_low"] <= table["val_auc"]).all()
    assert (table["val_auc"] <= table["val_auc_high"]).all()
    assert table["n_val"].eq(8).all()  # 25% of 16 patients x 2 images, the same split for both
    assert table["params"].iloc[1] == sum(
        p.numel() for p in create_model("resnet18", widths=[4, 8, 8, 8], blocks=[1, 1, 1, 1]).parameters())
    assert "cnn: val AUC" in run.stdout and "HOG floor" in run.stdout
    split = pd.read_csv(out / "runs" / "cnn" / "split.csv", dtype={"patient_id": str})
    assert split.groupby("patient_id")["split"].nunique().eq(1).all()  # patient-level split
    scored = subprocess.run([sys.executable, str(SCRIPT), "--score",
                             str(out / "runs" / "cnn" / "predictions.csv"), "--seed", "3"],
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert f"val AUC {table['val_auc'].iloc[0]:.3f}" in scored.stdout


def test_shared_cpu_config_pretrains_with_the_chosen_candidate() -> None:
    doc = yaml.safe_load(CANDIDATES.read_text())
    for name, spec in doc["candidates"].items():  # every candidate is a valid setting
        ClsTrainConfig.from_dict({**doc["common"]["train"], **spec["train"]})
        create_model(spec["model"], **spec.get("model_kwargs", {}))
    chosen = doc["candidates"][doc["chosen"]]
    cls = yaml.safe_load((ROOT / "config" / "shared_cpu.yaml").read_text())["cls"]
    assert cls["model"] == chosen["model"] and cls["input_size"] == chosen["input_size"]
    assert cls.get("model_kwargs", {}) == chosen.get("model_kwargs", {})
    want = ClsTrainConfig.from_dict({**doc["common"]["train"], **chosen["train"]})
    assert ClsTrainConfig.from_dict(cls["pretrain"]) == want
    assert cls.get("weights") is None
