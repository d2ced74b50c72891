"""The bundled model is a workflow product (issue 20): `snakemake -- bundle` trains, scores the
full-resolution path and packages weights, split, card and metadata.json; same seed and threads
give the same weights; `cxrbs models` reads the metadata; full-resolution scoring is right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxrbs.bs import bundled
from cxrbs.bs.fullres import evaluate_fullres, fullres_files, score_fullres
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png
from cxrbs.data.phantom_layouts import write_layout
from cxrbs.models.checkpoint import sha256_of

NAME = "cxrbs-bs-tiny-v3"


def _config(tmp: Path) -> Path:
    pairs = write_layout("pairs", tmp / "pairs", 14, size=64, seed=3)
    des = write_layout("des", tmp / "des", 3, size=96, seed=4)
    config = {
        "seed": 7, "image_size": 32,
        "datasets": {"jsrt": {"role": "bs_train", "layout": "paired", "path": str(pairs)},
                     "szch": {"role": "bs_test", "layout": "paired", "path": str(des)}},
        "bs": {"architectures": {"unet_bs": {"width": 4, "levels": 2}},
               "val_fraction": 0.2, "test_fraction": 0.2, "augment": {"n_pairs": 0},
               "stratify_regex": "^(JPC[LN]N)", "n_boot": 100,
               "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "crop_size": 16,
                         "schedule": "cosine", "warmup_frac": 0.25, "select_on": "psnr_gain",
                         "ema_decay": 0.5, "grad_clip": 1.0,
                         "online_augment": {"prob": 0.8, "hflip": 0.5, "gamma": [0.8, 1.2],
                                            "blur_sigma": [0, 1], "scale": [0.9, 1.1]}}},
        "cls": {"pretrain": {}, "finetune": {}},
        "bundle": {"name": NAME, "description": "a test bundle", "data_source": "phantoms",
                   "data_license": "CC0", "figure_input": str(next((des / "source").glob("*"))),
                   "n_boot": 100},
        "resources": {"train_threads": 1, "train_mem_mb": 1000, "data_mem_mb": 1000},
    }
    path = tmp / "bundle.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_bundle_target_packages_a_reproducible_model(tmp_path: Path, monkeypatch) -> None:
    """~1.5 min. (Same seed -> same weights with this recipe: test_bs_recipe.py.)"""
    from test_workflow import output, snakemake

    config = _config(tmp_path)
    result = snakemake("bundle", "--cores", "2", "--configfile", str(config),
                       workdir=tmp_path / "b")
    assert result.returncode == 0, output(result)[-5000:]
    folder = tmp_path / "b" / "results" / "bundle" / NAME
    shas = [sha256_of(folder / f"{NAME}.pt")]
    index = json.loads((folder / "models.json").read_text())
    assert index[NAME]["sha256"] == shas[0] and index[NAME]["metadata"] == f"{NAME}.metadata.json"
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([f"{NAME}.pt", f"{NAME}.md", f"{NAME}.metadata.json",
                            f"{NAME}.split.csv", f"{NAME}_figure.png", "models.json"])
    meta = json.loads((folder / f"{NAME}.metadata.json").read_text())
    assert meta["version"] == "3.0.0" and meta["sha256"] == shas[0]
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert set(meta["eval_metrics"]) == {"validation", "heldout_test", "szch"}
    assert "cross-institution" in meta["eval_metrics"]["szch"]["role"]
    assert meta["training"]["config"]["select_on"] == "psnr_gain"
    # the card's numbers are the package's own paired tests of the full-resolution scores
    per_image = pd.read_csv(tmp_path / "b/results/bs/eval_fullres/unet_bs/szch.csv")
    ident = pd.read_csv(tmp_path / "b/results/bs/eval_fullres/identity/szch.csv")
    gain = per_image["psnr"].mean() - ident["psnr"].mean()
    assert meta["eval_metrics"]["szch"]["psnr"]["mean_gain"] == pytest.approx(gain)
    card = (folder / f"{NAME}.md").read_text()
    hl = meta["eval_metrics"]["szch"]["psnr"]["gain"]
    assert f"{hl:+.2f}" in card and "--configfile" in card and "-- bundle" in card
    split = pd.read_csv(folder / f"{NAME}.split.csv")
    assert split["split"].value_counts().to_dict() == meta["split"]
    # installed: `cxrbs models` reads the metadata
    monkeypatch.setattr(bundled, "BUNDLED_DIR", folder)
    (model,) = bundled.list_bundled(folder)
    assert model.metadata["name"] == NAME and bundled.verified_weights(model)
    text = bundled.describe(model)
    assert "version 3.0.0" in text and "licence: CC0" in text and "32x32" in text


def test_fullres_scoring_of_identity_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0.2, 0.8, (80, 60)).astype(np.float32)
    tgt = np.clip(src - 0.05, 0, 1)
    same = score_fullres(src, src, src, size=32)
    assert same["psnr"] == 100.0 and same["mae"] == 0.0
    worse = score_fullres(src, src, tgt, size=32)
    better = score_fullres(src, tgt, tgt, size=32)
    assert better["psnr"] > worse["psnr"]
    with pytest.raises(CxrbsError, match="equal shapes"):
        score_fullres(src, src[:10], tgt, size=32)
    for folder in ("source", "target"):
        (tmp_path / folder).mkdir()
    write_png(tmp_path / "source" / "p1.png", src, bits=16)
    write_png(tmp_path / "target" / "p1.png", tgt, bits=16)
    frame = evaluate_fullres(None, [("p1", tmp_path / "source/p1.png",
                                     tmp_path / "target/p1.png")], arch="identity",
                             test_set="x", size=32, progress=False)
    assert frame.loc[0, "psnr"] == pytest.approx(worse["psnr"], abs=0.05)
    assert list(frame.columns[:3]) == ["arch", "test_set", "name"]
    write_png(tmp_path / "target" / "p2.png", tgt[:40], bits=16)
    write_png(tmp_path / "source" / "p2.png", src, bits=16)
    with pytest.raises(CxrbsError, match="one size"):
        evaluate_fullres(None, [("p2", tmp_path / "source/p2.png", tmp_path / "target/p2.png")],
                         arch="identity", test_set="x", size=32, progress=False)
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"index": [0], "image_path": [str(tmp_path / "source/p1.png")],
                  "patient_id": ["p1"], "pair_id": ["p1"]}).to_csv(manifest, index=False)
    with pytest.raises(CxrbsError, match="target_path"):
        fullres_files({"d": manifest})
