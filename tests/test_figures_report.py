"""Figures and the self-contained HTML report, on a tiny fake results tree in the exact formats."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch

from cxrbs.core.atomic import save_npy, save_torch, write_csv, write_json
from cxrbs.bs.choice import write_choice
from cxrbs.bs.evaluate import summarize_evaluations
from cxrbs.bs.paired_stats import paired_tests
from cxrbs.cls.pipeline import compare, evaluate
from cxrbs.explain.crm import class_selective_relevance_map, mass_inside_boxes
from cxrbs.core.layout import Layout
from cxrbs.explain.analysis import run_analysis
from cxrbs.explain.selection import example_indices, select_crm_cases
from cxrbs.explain.store import ExplainFiles, load_arrays, read_notes
from cxrbs.report.figures import make_all_figures
from cxrbs.report.figures_bs import plot_bs_examples, plot_bs_metrics, plot_training_curves
from cxrbs.report.figures_cls import plot_confusion, plot_metric_comparison, plot_roc
from cxrbs.report.figures_explain import plot_crm_grid, plot_tsne
from cxrbs.data.io import write_png
from cxrbs.models import create_model
from cxrbs.data.preprocess import to_uint16
from cxrbs.report.html import bs_summary_table, build_report, format_number, software_versions
from cxrbs.report.html_blocks import format_p
from cxrbs.cls.stats import TEST_DELONG, TEST_MCNEMAR

S = 32  # stack side
ORIG_W, ORIG_H = 64, 48  # original image size: boxes are given in these pixels
N_TB = 16
HEADINGS = ["At a glance", "Data", "Statistical methods", "Bone suppression", "Classification", "Statistics", "Relevance maps",
            "Feature space", "Configuration and software"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# the fake results tree
# ---------------------------------------------------------------------------------------------
def _phantoms(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth random images in [0, 1] with a bright 'rib' band, so maps are not degenerate."""
    yy, xx = np.mgrid[0:S, 0:S] / S
    base = 0.5 + 0.3 * np.sin(6 * xx)[None] * rng.uniform(0.5, 1, (n, 1, 1))
    ribs = 0.2 * (np.sin(20 * yy) > 0.7)[None]
    return np.clip(base + ribs + rng.normal(0, 0.02, (n, S, S)), 0, 1).astype(np.float32)


def _config(boxes: Path | None, synthetic: bool = True) -> dict[str, Any]:
    return {
        "seed": 13,
        "synthetic": synthetic,
        "datasets": {
            "pairs": {"role": "bs_train", "layout": "paired"},
            "des": {"role": "bs_test", "layout": "paired"},
            "shenzhen": {"role": "tb", "layout": "shenzhen"},
            "cxr8": {"role": "pretrain", "layout": "class_folders"},
        },
        "cls": {"threshold": 0.5, "variants": ["baseline", "bone_suppressed"], "folds": 2},
        "report": {"crm_threshold": 0.1, "crm_examples": 2,
                   "boxes_csv": str(boxes) if boxes else None},
    }


def _write_sources(root: Path, config: dict[str, Any], synthetic: bool) -> None:
    for name, spec in config["datasets"].items():
        write_json(root / "resources" / name / "source.json",
                   {"name": name, "root": str(root / "raw" / name), "origin": "synthetic phantoms",
                    "synthetic": synthetic, "layout": spec["layout"]})


def _write_bs(results: Path, rng: np.random.Generator) -> None:
    n = 6
    target = _phantoms(rng, n) * 0.8
    source = np.clip(target + 0.15 * (np.arange(S) % 8 < 2)[None, :, None], 0, 1)
    save_npy(results / "data" / "des" / "images.npy", to_uint16(np.stack([source, target], axis=1)))
    write_csv(results / "data" / "des" / "manifest.csv", pd.DataFrame({
        "index": range(n), "image_path": [f"/raw/des/source/p{i}.png" for i in range(n)],
        "target_path": [f"/raw/des/target/p{i}.png" for i in range(n)],
        "patient_id": [f"d{i}" for i in range(n)], "label": np.nan,
        "pair_id": [f"p{i}" for i in range(n)]}))
    names = [f"p{i}" for i in range(n)]
    frames = []
    for arch, offset in (("identity", 0.0), ("ae_bs", 1.5), ("convnet_bs", -2.0)):
        psnr = 30 + offset + rng.normal(0, 1, n)
        frames.append(pd.DataFrame({
            "arch": arch, "test_set": "des", "name": names, "mae": 0.03 - offset / 100,
            "psnr": psnr, "ssim": 0.9 + offset / 100, "ms_ssim": 0.95 + offset / 100,
            "bsr": 0.5 + offset / 10, "bsr_energy": offset / 10}))
        write_csv(results / "bs" / "eval" / arch / "des.csv", frames[-1])
    summary = summarize_evaluations(frames)
    write_csv(results / "bs" / "eval" / "summary.csv", summary)
    # models are selected on the validation pairs only (issue 12); here they mirror des
    validation = summarize_evaluations([f.assign(test_set="validation") for f in frames])
    best = write_choice(results / "bs" / "best.json", pd.concat([validation, summary]),
                        metric="psnr")
    write_csv(results / "bs" / "eval" / "paired.csv",
              paired_tests(pd.concat(frames, ignore_index=True), selected=best["arch"]))
    for arch in ("ae_bs", "convnet_bs"):
        epochs = np.arange(1, 5)
        write_csv(results / "bs" / "models" / arch / "history.csv", pd.DataFrame({
            "epoch": epochs, "loss": 0.5 / epochs, "val_loss": 0.6 / epochs, "lr": 1e-3,
            "seconds": 1.0, "images_per_s": 10.0}))
    model = create_model("ae_bs", seed=0, widths=[4, 8, 8])
    save_torch(results / "bs" / "models" / "ae_bs" / "best.pt", {
        "model_name": "ae_bs", "model_kwargs": {"widths": [4, 8, 8]},
        "model_state": model.state_dict()})


def _write_tb(root: Path, results: Path, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    images = _phantoms(rng, N_TB)
    labels = np.array([0, 1] * (N_TB // 2))
    names = [f"CHNCXR_{i:04d}_{labels[i]}" for i in range(N_TB)]
    paths = []
    for i, name in enumerate(names):
        path = root / "raw" / "shenzhen" / f"{name}.png"
        write_png(path, np.resize(images[i], (ORIG_H, ORIG_W)))
        paths.append(str(path))
    manifest = pd.DataFrame({"index": range(N_TB), "image_path": paths, "target_path": np.nan,
                             "patient_id": [f"s{i:03d}" for i in range(N_TB)], "label": labels,
                             "pair_id": names})
    write_csv(results / "data" / "shenzhen" / "manifest.csv", manifest)
    save_npy(results / "data" / "shenzhen" / "images.npy", to_uint16(images[:, None]))
    save_npy(results / "suppressed" / "shenzhen" / "images.npy", to_uint16(images[:, None] * 0.9))
    write_csv(results / "suppressed" / "shenzhen" / "manifest.csv", manifest)
    folds = np.arange(N_TB) // 2 % 2  # 2 folds, each with both labels
    write_csv(results / "data" / "shenzhen" / "folds.csv",
              manifest[["index", "image_path", "patient_id", "label"]].assign(fold=folds))
    return names, folds


def _write_cls(results: Path, names: list[str], folds: np.ndarray,
               rng: np.random.Generator) -> None:
    labels = np.array([int(n[-1]) for n in names])
    files = []
    for v, (variant, signal) in enumerate((("baseline", 0.25), ("bone_suppressed", 0.35))):
        for k in (0, 1):
            idx = np.flatnonzero(folds == k)
            rows = []
            for model, strength in (("deep", signal), ("hog_floor", 0.1)):
                score = 0.5 + strength * (2 * labels[idx] - 1) + rng.normal(0, 0.2, idx.size)
                rows.append(pd.DataFrame({
                    "dataset": "shenzhen", "variant": variant, "model": model, "fold": k,
                    "image": [names[i] for i in idx], "patient": [f"s{i:03d}" for i in idx],
                    "label": labels[idx], "probability": np.clip(score, 0.01, 0.99)}))
            out = results / "cls" / "shenzhen" / variant / f"fold{k}"
            write_csv(out / "predictions.csv", pd.concat(rows))
            files.append(out / "predictions.csv")
            net = create_model("small_cnn", seed=10 * v + k, widths=[4, 8])
            save_torch(out / "model.pt", {"state_dict": net.state_dict(), "model_name": "small_cnn",
                                          "model_kwargs": {"widths": [4, 8]}})
    pre = pd.DataFrame({"dataset": "pretrain", "variant": "baseline", "model": "deep",
                        "fold": "val", "image": [f"x{i}" for i in range(12)],
                        "patient": [f"x{i}" for i in range(12)], "label": [0, 1] * 6,
                        "probability": np.linspace(0.1, 0.9, 12)})
    write_csv(results / "cls" / "pretrain" / "predictions.csv", pre)
    write_csv(results / "cls" / "pretrain" / "history.csv", pd.DataFrame({
        "epoch": [1, 2, 3], "loss": [0.7, 0.6, 0.5], "val_loss": [0.72, 0.65, 0.6],
        "val_auc": [0.6, 0.7, 0.75],
        "val_acc": [0.5, 0.6, 0.7], "lr": 0.01, "seconds": 1.0, "images_per_s": 5.0}))
    all_files = [results / "cls" / "pretrain" / "predictions.csv", *files]
    write_csv(results / "cls" / "metrics.csv",
              evaluate(all_files, threshold=0.5, n_boot=100, seed=0))
    write_csv(results / "cls" / "comparison.csv", compare(files, threshold=0.5))


def _build_tree(root: Path, *, synthetic: bool = True,
                boxes: bool = True) -> tuple[Path, dict[str, Any]]:
    rng = np.random.default_rng(0)
    results = root / "results"
    box_path = root / "boxes.csv" if boxes else None
    config = _config(box_path, synthetic)
    _write_sources(root, config, synthetic)
    _write_bs(results, rng)
    names, folds = _write_tb(root, results, rng)
    _write_cls(results, names, folds, rng)
    if box_path is not None:
        # Two TB images (one per fold) with a box in original-image pixels (64 x 48).
        tb_names = [n for n, f in zip(names, folds, strict=True) if n.endswith("_1")]
        pd.DataFrame({"image": [tb_names[0] + ".png", tb_names[-1]], "x": [16, 0], "y": [12, 0],
                      "w": [32, 32], "h": [24, 48]}).to_csv(box_path, index=False)
    return results, config


def _analyse(results: Path, config: dict[str, Any]) -> dict[str, list[str]]:
    """The explain rule's step: models and stacks in, tables and arrays out."""
    boxes = config["report"]["boxes_csv"]
    files = ExplainFiles.of(Layout(results), with_boxes=bool(boxes))
    return run_analysis(Layout(results), config, files, boxes_csv=boxes)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tree")
    results, config = _build_tree(root)
    _analyse(results, config)
    notes: dict[str, list[str]] = {}
    figures = make_all_figures(results, config, results / "figures", notes=notes)
    html = build_report(results, config, figures, results / "report.html",
                        versions=software_versions(), notes=notes)
    return {"root": root, "results": results, "config": config, "figures": figures, "notes": notes,
            "html": html.read_text(encoding="utf-8")}


def _assert_png(path_or_bytes: Path | bytes) -> np.ndarray:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    img = iio.imread(data, extension=".png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 5  # not a blank canvas
    return img


# ---------------------------------------------------------------------------------------------
# the whole tree
# ---------------------------------------------------------------------------------------------
def test_make_all_figures_draws_every_part(tree: dict[str, Any]) -> None:
    names = {k: sorted(p.name for p in v) for k, v in tree["figures"].items()}
    assert names["summary"] == ["summary.png"]
    assert names["bone_suppression"] == ["bs_examples_des.png", "bs_forest.png", "bs_metrics.png",
                                         "bs_scatter.png", "bs_training_curves.png"]
    assert names["classification"] == ["cls_confusion_shenzhen.png", "cls_metrics_pretrain.png",
                                       "cls_metrics_shenzhen.png", "cls_pretrain_curves.png",
                                       "cls_roc_shenzhen.png"]
    assert names["statistics"] == ["cls_comparison.png"]
    assert names["relevance_maps"] == ["crm_shenzhen.png"]
    assert names["feature_space"] == ["tsne_shenzhen.png"]
    for paths in tree["figures"].values():
        for path in paths:
            _assert_png(path)
    # Nothing was missing, so no section needed a note.
    assert not any(tree["notes"].values()), tree["notes"]


def test_feature_space_table_matches_an_independent_computation(tree: dict[str, Any]) -> None:
    from cxrbs.cls.train import load_classifier
    from cxrbs.explain.feature_space import cluster_scores, extract_features
    from cxrbs.data.preprocess import from_uint16

    results = tree["results"]
    table = pd.read_csv(results / "cls" / "feature_space.csv")
    assert len(table) == 4 and set(table["variant"]) == {"baseline", "bone_suppressed"}
    folds = pd.read_csv(results / "data" / "shenzhen" / "folds.csv")
    idx = np.flatnonzero(folds["fold"] == 1)
    model, _ = load_classifier(results / "cls/shenzhen/bone_suppressed/fold1/model.pt")
    images = from_uint16(np.load(results / "suppressed" / "shenzhen" / "images.npy")[idx, 0])
    expected = cluster_scores(extract_features(model, images), folds["label"].to_numpy()[idx])
    row = table[(table["variant"] == "bone_suppressed") & (table["fold"] == 1)].iloc[0]
    assert row["silhouette"] == pytest.approx(expected["silhouette"], rel=1e-5)
    assert row["davies_bouldin"] == pytest.approx(expected["davies_bouldin"], rel=1e-5)


def test_crm_boxes_scaled_from_original_pixels(tree: dict[str, Any]) -> None:
    from cxrbs.cls.train import load_classifier
    from cxrbs.data.preprocess import from_uint16

    results = tree["results"]
    boxes = pd.read_csv(results / "cls" / "crm_boxes.csv")
    # 2 boxed images x 2 variants x 2 methods; a share in [0, 1], NaN only for an all-zero map
    assert len(boxes) == 8
    crm_rows = boxes[boxes["method"] == "crm"]
    assert crm_rows["mass_inside"].between(0, 1).all()
    assert boxes["mass_inside"].between(0, 1).sum() + boxes["mass_inside"].isna().sum() == 8
    assert set(boxes["method"]) == {"crm", "grad_cam"}
    name = boxes["image"].iloc[0]
    folds = pd.read_csv(results / "data" / "shenzhen" / "folds.csv")
    i = int(np.flatnonzero(folds["image_path"].map(lambda p: Path(p).stem) == name)[0])
    fold = int(folds["fold"][i])
    model, _ = load_classifier(results / f"cls/shenzhen/baseline/fold{fold}/model.pt")
    img = from_uint16(np.load(results / "data" / "shenzhen" / "images.npy")[i, 0])
    crm = class_selective_relevance_map(model, torch.from_numpy(img)[None, None], threshold=0.1)
    # (16, 12, 32, 24) in 64 x 48 pixels is (8, 8, 16, 16) in the 32 x 32 stack
    expected = mass_inside_boxes(crm, [(8.0, 8.0, 16.0, 16.0)])
    got = boxes[(boxes["image"] == name) & (boxes["variant"] == "baseline")
                & (boxes["method"] == "crm")]
    assert got["mass_inside"].iloc[0] == pytest.approx(expected, rel=1e-6)


def test_report_is_self_contained(tree: dict[str, Any]) -> None:
    html = tree["html"]
    assert re.findall(r"<h2>(.*?)</h2>", html) == HEADINGS
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    assert len(srcs) == sum(len(v) for v in tree["figures"].values()) == 14
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        _assert_png(base64.b64decode(src.split(",", 1)[1]))
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)
    assert "<link" not in html and "<script" not in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs and all(h.startswith(("#", "data:text/csv;base64,")) for h in hrefs), hrefs
    assert "SYNTHETIC DEMO DATA" in html


def test_report_tables_show_identity_tests_and_config(tree: dict[str, Any]) -> None:
    html = tree["html"]
    bs = html.split("<h2>Bone suppression</h2>")[1].split("<h2>")[0]
    assert 'class="dataframe cxrbs-table"' in bs and ">identity<" in bs
    # convnet_bs is 2 dB below the identity: never "better" (no paired tests in this tree: the
    # column says so instead of reading the means, issue 22)
    assert re.search(r">convnet_bs<.*?(NOT better than leaving the image unchanged|no paired "
                     r"test against identity)", bs, re.S)
    stats = html.split("<h2>Statistics</h2>")[1].split("<h2>")[0]
    comparison = pd.read_csv(tree["results"] / "cls" / "comparison.csv")
    # each test named once (in the caption), not on every row
    assert stats.count(TEST_DELONG) == 1 and stats.count(TEST_MCNEMAR) == 1
    assert stats.count("<tr") == len(comparison) + 1  # header + one row per comparison row
    p_delong = comparison.loc[comparison["test"] == TEST_DELONG, "p_value"].iloc[0]
    assert f">{format_p(p_delong)}<" in stats  # 2 significant digits
    data = html.split("<h2>Data</h2>")[1].split("<h2>")[0]
    assert ">shenzhen<" in data and ">0: 8; 1: 8<" in data and ">synthetic phantoms<" in data
    cfg = html.split("<h2>Configuration and software</h2>")[1]
    assert "crm_examples: 2" in cfg and ">torch<" in cfg and ">snakemake<" in cfg
    assert not re.search(r"20\d\d-\d\d-\d\d", html)  # no dates: reruns give the same file


def test_rerun_gives_identical_report(tree: dict[str, Any], tmp_path: Path) -> None:
    results, config = tree["results"], tree["config"]
    notes: dict[str, list[str]] = {}
    figures = make_all_figures(results, config, tmp_path / "figures", notes=notes)
    for a, b in zip(sorted(p for v in figures.values() for p in v),
                    sorted(p for v in tree["figures"].values() for p in v), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    html = build_report(results, config, figures, tmp_path / "report.html",
                        versions=software_versions(), notes=notes)
    assert html.read_text(encoding="utf-8") == tree["html"]


def test_missing_models_and_boxes_become_notes(tmp_path: Path) -> None:
    results, config = _build_tree(tmp_path, synthetic=False, boxes=False)
    for path in results.glob("cls/shenzhen/*/fold1/model.pt"):
        path.unlink()
    shutil.rmtree(results / "bs" / "eval" / "ae_bs")
    for name in ("bs/eval/summary.csv", "cls/metrics.csv", "cls/comparison.csv"):
        (results / name).unlink()
    _analyse(results, config)
    notes: dict[str, list[str]] = {}
    figures = make_all_figures(results, config, results / "figures", notes=notes)
    assert any("summary.csv" in n for n in notes["bone_suppression"])
    assert any("metrics.csv" in n for n in notes["classification"])
    assert any("comparison.csv" in n for n in notes["statistics"]) and not figures["statistics"]
    assert any("fold 1" in n and "model.pt" in n for n in notes["feature_space"])
    assert any("boxes" in n for n in notes["relevance_maps"])
    assert any("example images left out" in n for n in notes["bone_suppression"])
    assert [p.name for p in figures["relevance_maps"]] == ["crm_shenzhen.png"]  # fold 0 still there
    table = pd.read_csv(results / "cls" / "feature_space.csv")
    assert sorted(table["fold"].unique()) == [0]
    assert not (results / "cls" / "crm_boxes.csv").exists()
    # nothing at all from the classifier models
    shutil.rmtree(results / "cls" / "shenzhen")
    _analyse(results, config)
    notes = {}
    figures = make_all_figures(results, config, results / "figures2", notes=notes)
    assert figures["relevance_maps"] == [] and figures["feature_space"] == []
    assert pd.read_csv(results / "cls" / "feature_space.csv").empty
    html = build_report(results, config, figures, tmp_path / "r.html", versions={"python": "3"},
                        notes=notes)
    text = html.read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", text) == HEADINGS
    assert "SYNTHETIC" not in text
    assert "No expert boxes configured" in text and "no cluster scores" in text


def test_report_without_any_results(tmp_path: Path) -> None:
    config = _config(None, synthetic=False)
    _analyse(tmp_path / "results", config)
    notes: dict[str, list[str]] = {}
    figures = make_all_figures(tmp_path / "results", config, tmp_path / "figs", notes=notes)
    assert all(v == [] for v in figures.values())
    html = build_report(tmp_path / "results", config, figures, tmp_path / "r.html", versions={},
                        notes=notes)
    text = html.read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", text) == HEADINGS
    assert "no bone-suppression evaluation" in text and "no classification metrics" in text


def test_synthetic_banner_from_source_json_alone(tree: dict[str, Any], tmp_path: Path) -> None:
    config = dict(tree["config"], synthetic=False)
    html = build_report(tree["results"], config, {}, tmp_path / "r.html", versions={})
    assert "SYNTHETIC DEMO DATA" in html.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# single functions
# ---------------------------------------------------------------------------------------------
def test_example_indices_and_case_selection() -> None:
    picks = example_indices([30.0, 35.0, np.nan, 20.0, 31.0, 25.0])
    assert picks == [("best", 1), ("median", 0), ("worst", 3)]
    picks = example_indices([0.1, 0.3, 0.2], higher_is_better=False)  # e.g. MAE
    assert picks == [("best", 0), ("median", 2), ("worst", 1)]
    assert example_indices([5.0]) == [("best", 0)]
    labels = [1, 1, 0, 1, 1, 1]
    prob = [0.9, 0.6, 0.99, 0.2, 0.45, 0.7]
    assert select_crm_cases(labels, prob, 0.5, 4) == [(0, True), (5, True), (3, False), (4, False)]
    # only one wrong case: the rest filled with right ones
    cases = select_crm_cases([1, 1, 1, 1], [0.9, 0.8, 0.7, 0.1], 0.5, 3)
    assert cases == [(0, True), (1, True), (3, False)]


def test_plot_crm_grid_draws_overlays_and_boxes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    imgs = _phantoms(rng, 2)
    heat = np.zeros((2, S, S))
    heat[:, 4:12, 20:28] = 1.0
    titles = ["case A: right", "case B: wrong"]

    def draw(name: str, maps: np.ndarray, boxes: list[list[Any]] | None) -> np.ndarray:
        out = plot_crm_grid(imgs, imgs * 0.9, maps, maps[:, ::-1], titles, tmp_path / name,
                            gradcam_orig=maps, gradcam_bs=maps, boxes=boxes)
        return _assert_png(out)[..., :3].astype(int)

    boxed = draw("boxed.png", heat, [[(20, 4, 8, 8)], []])
    plain = draw("plain.png", heat, None)
    empty = draw("empty.png", np.zeros_like(heat), None)
    assert boxed.shape == plain.shape == empty.shape
    # The heat maps add colour to gray radiographs ...
    chroma = plain.max(axis=2) - plain.min(axis=2)
    changed = (plain != empty).any(axis=2)
    assert changed.sum() > 500 and np.median(chroma[changed]) > 30
    # ... and the boxes are the green pixels that differ between the boxed and the plain grid.
    # (The suptitle differs as well: count only pixels inside the image panels, i.e. green ones.)
    drawn = (boxed != plain).any(axis=2)
    green = (boxed[..., 1] - np.maximum(boxed[..., 0], boxed[..., 2])) > 80
    assert (drawn & green).sum() > 100
    with pytest.raises(ValueError):
        plot_crm_grid(imgs, imgs, heat, heat, ["only one title"], tmp_path / "bad.png")


def test_single_plot_functions_write_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    src, tgt = _phantoms(rng, 4), _phantoms(rng, 4)
    _assert_png(plot_bs_examples(src, tgt * 0.98, tgt, list("abcd"), [30, 31, 29, 35],
                                 tmp_path / "ex.png"))
    summary = pd.DataFrame({"arch": ["identity", "m1"], "test_set": "t", "metric": "psnr",
                            "mean": [30.0, 31.0],
                            "sd": 1.0, "ci_low": [29.0, np.nan], "ci_high": [31.0, np.nan], "n": 5})
    _assert_png(plot_bs_metrics(summary, tmp_path / "m.png"))
    hist = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "val_loss": [1.1, np.nan]})
    _assert_png(plot_training_curves({"m1": hist}, tmp_path / "h.png"))
    labels = np.array([0, 1] * 6)
    preds = pd.DataFrame({"variant": "baseline", "model": "deep", "fold": np.arange(12) % 2,
                          "label": labels, "probability": rng.uniform(size=12)})
    _assert_png(plot_roc(preds, tmp_path / "roc.png"))
    _assert_png(plot_confusion(preds, 0.5, tmp_path / "cm.png"))
    comp = pd.DataFrame({"dataset": "d", "metric": ["auc", "accuracy"], "difference": [0.05, -0.01],
                         "ci_low": [-0.01, -0.05], "ci_high": [0.11, 0.03],
                         "test": ["DeLong", "McNemar"],
                         "p_value": [0.04, np.nan]})
    _assert_png(plot_metric_comparison(comp, tmp_path / "cmp.png"))
    emb = rng.normal(size=(12, 2))
    scores = {"baseline": {"silhouette": 0.1, "davies_bouldin": 2.0}}  # bone_suppressed absent
    _assert_png(plot_tsne(emb, emb + 1, labels, scores, tmp_path / "t.png"))


def test_bs_summary_table_and_number_format() -> None:
    summary = pd.DataFrame({
        "arch": ["identity", "identity", "good", "good", "bad", "bad"], "test_set": "t",
        "metric": ["psnr", "mae"] * 3, "mean": [30.0, 0.02, 31.0, 0.01, 29.0, 0.03],
        "ci_low": [29.0, 0.01, 30.0, 0.005, 28.0, 0.02],
        "ci_high": [31.0, 0.03, 32.0, 0.015, 30.0, 0.04],
        "sd": 1.0, "n": 5})
    # "beats identity" comes from the paired tests (adjusted p and CI), never from the means
    paired = pd.DataFrame({"test_set": "t", "model_a": ["good", "good", "bad", "bad"],
                           "model_b": "identity", "metric": ["psnr", "mae"] * 2,
                           "a_better": [True, True, False, False]})
    table = bs_summary_table(summary, paired).set_index("model")
    assert list(table.index) == ["bad", "good", "identity"]
    assert table.at["good", "beats identity on"] == "mae, psnr"  # lower MAE, higher PSNR
    assert table.at["bad", "beats identity on"].startswith("none: NOT better")
    # higher mean PSNR but no significant paired test: not "better"
    unsure = bs_summary_table(summary, paired.assign(a_better=False)).set_index("model")
    assert unsure.at["good", "beats identity on"].startswith("none: NOT better")
    assert bs_summary_table(summary).set_index("model").at["good", "beats identity on"] \
        .startswith("n/a: no paired test")
    assert table.at["good", "psnr"] == "31 [30, 32]"
    assert format_number(0.123456) == "0.1235" and format_number(float("nan")) == "n/a"
    assert format_number(12345.6) == "1.23e+04" and format_number("x") == "x"
    assert format_number(0.004567) == "0.0046" and format_number(42.14178) == "42.14"
    assert format_p(0.27796) == "0.28" and format_p(1.0) == "1" and format_p(0.0625) == "0.062"
    assert format_p(float("nan")) == "n/a" and format_p(1e-7) == "< 0.0001"


def test_index_json_round_trip_through_scripts_format(tree: dict[str, Any], tmp_path: Path) -> None:
    """make_report.py reads paths back from index.json as strings: those must work too."""
    index = {"figures": {k: [str(p) for p in v] for k, v in tree["figures"].items()},
             "notes": tree["notes"]}
    loaded = json.loads(json.dumps(index))
    html = build_report(tree["results"], tree["config"], loaded["figures"], tmp_path / "r.html",
                        versions=software_versions(), notes=loaded["notes"])
    assert html.read_text(encoding="utf-8") == tree["html"]


# ---------------------------------------------------------------------------------------------
# the explain stage and the two workflow scripts
# ---------------------------------------------------------------------------------------------
def test_analysis_writes_what_the_figures_draw(tree: dict[str, Any]) -> None:
    files = ExplainFiles.of(Layout(tree["results"]))
    examples = pd.read_csv(files.bs_examples_table)
    assert list(examples["kind"]) == ["best", "median", "worst"]
    assert set(examples["test_set"]) == {"des"} and set(examples["arch"]) == {"ae_bs"}
    psnr = pd.read_csv(tree["results"] / "bs" / "eval" / "ae_bs" / "des.csv")["psnr"]
    assert examples["psnr"].iloc[0] == pytest.approx(psnr.max())
    arrays = load_arrays(files.bs_examples)
    assert sorted(arrays) == ["prediction_des", "source_des", "target_des"]
    assert all(a.shape == (3, S, S) for a in arrays.values())
    cases = pd.read_csv(files.crm_cases)
    assert len(cases) == 2 and set(cases["fold"]) == {0}  # crm_examples: 2, first fold only
    maps = load_arrays(files.crm_maps)
    for kind in ("image", "crm", "cam"):
        for variant in ("baseline", "bone_suppressed"):
            assert maps[f"{kind}_{variant}_shenzhen"].shape == (2, S, S)
    assert maps["boxes_shenzhen"].shape[1] == 5
    tsne = pd.read_csv(files.tsne)
    n_fold0 = int((pd.read_csv(tree["results"] / "data/shenzhen/folds.csv")["fold"] == 0).sum())
    assert len(tsne) == 2 * n_fold0 and set(tsne["fold"]) == {0}
    assert read_notes(files.notes) == {"bone_suppression": [], "relevance_maps": [],
                                       "feature_space": []}


def test_figures_need_no_torch(repo_root: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, cxrbs.report.figures, cxrbs.explain.store; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0


class _Named(dict):  # type: ignore[type-arg]
    """Just enough of snakemake's Namedlist: attribute and key access."""

    __getattr__ = dict.__getitem__


def _run_script(repo_root: Path, name: str, **parts: Any) -> None:
    import runpy

    sm = _Named(log=[], threads=1, **{k: _Named(v) for k, v in parts.items()})
    runpy.run_path(str(repo_root / "workflow" / "scripts" / name), init_globals={"snakemake": sm})


def test_explain_and_figures_scripts_pass_declared_paths(tree: dict[str, Any], tmp_path: Path,
                                                         repo_root: Path) -> None:
    """The scripts read and write only the paths they are given: outputs land where the rule
    says, and equal the package functions' own results."""
    results, config = tree["results"], tree["config"]
    out = tmp_path / "explain"
    outputs = {"bs_examples": out / "bs.npz", "bs_examples_table": out / "bs.csv",
               "crm_maps": out / "maps.npz", "crm_cases": out / "cases.csv",
               "tsne": out / "tsne.csv", "notes": out / "notes.json",
               "feature_space": out / "fs.csv", "crm_boxes": out / "boxes.csv"}
    params = {k: config[k] for k in ("seed", "datasets", "cls", "report")}
    _run_script(repo_root, "explain_models.py", params=params, output=outputs,
                input={"bs_summary": results / "bs" / "eval" / "summary.csv",
                       "boxes": [config["report"]["boxes_csv"]]})
    for name in ("feature_space", "crm_boxes", "tsne", "crm_cases", "bs_examples_table"):
        expected = getattr(ExplainFiles.of(Layout(results)), name)
        assert outputs[name].read_bytes() == expected.read_bytes(), name
    inputs = {"bs_examples": outputs["bs_examples"],
              "bs_examples_table": outputs["bs_examples_table"],
              "crm_maps": outputs["crm_maps"], "crm_cases": outputs["crm_cases"],
              "tsne": outputs["tsne"], "explain_notes": outputs["notes"],
              "feature_space": outputs["feature_space"],
              "bs_summary": results / "bs" / "eval" / "summary.csv"}
    _run_script(repo_root, "make_figures.py", params=params, input=inputs,
                output={"figures": tmp_path / "figures"})
    index = json.loads((tmp_path / "figures" / "index.json").read_text(encoding="utf-8"))
    names = {k: sorted(Path(p).name for p in v) for k, v in index["figures"].items()}
    assert names == {k: sorted(p.name for p in v) for k, v in tree["figures"].items()}
    for path in (tmp_path / "figures").glob("*.png"):
        assert path.read_bytes() == (results / "figures" / path.name).read_bytes(), path.name


# ---------------------------------------------------------------------------------------------
# issue 23: the answers first, long tables collapsed, CSVs downloadable, 1280 px in a browser
# ---------------------------------------------------------------------------------------------
class _TableDepth(HTMLParser):
    """Each <table>'s row count and whether it sits inside a <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.tables = 0, []  # type: ignore[var-annotated]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self.depth += 1
        elif tag == "table":
            self.tables.append([self.depth > 0, 0])
        elif tag == "tr" and self.tables:
            self.tables[-1][1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.depth -= 1


def test_first_screen_answers_from_the_results(tree: dict[str, Any]) -> None:
    html = tree["html"]
    glance = html.split('<section id="summary"')[1].split("</section>")[0]
    assert html.index('<section id="summary"') < html.index("<nav>")  # before everything else
    comparison = pd.read_csv(tree["results"] / "cls" / "comparison.csv")
    primary = comparison[comparison["family"] == "primary"].iloc[0]
    assert ">shenzhen<" in glance and "Primary endpoint" in glance
    assert f">{format_number(float(primary['value_arm']))}<" in glance  # AUC of each arm
    assert f">{format_number(float(primary['value_reference']))}<" in glance
    assert f">{format_p(primary['p_adjusted'])}<" in glance
    assert re.search(r'class="verdict">(No evidence either way|The bone-suppressed images)', glance)
    best = json.loads((tree["results"] / "bs" / "best.json").read_text())
    paired = pd.read_csv(tree["results"] / "bs" / "eval" / "paired.csv")
    gain = paired[(paired["model_a"] == best["arch"]) & (paired["model_b"] == "identity")
                  & (paired["metric"] == "psnr") & (paired["test_set"] == "des")].iloc[0]
    assert f"Selected model {best['arch']}" in glance
    assert f"+{format_number(float(gain['difference']))} dB on des" in glance
    assert "MS-SSIM" in glance and "paired test supports it?" in glance
    # the warnings that change the reading: tiny samples, no control arm, one repeat
    assert "Tiny samples (shenzhen 16 images, des 6 pairs" in glance
    assert "No control (sham) arm" in glance and "One fine-tuning repeat" in glance
    assert glance.count("<img") == 1  # one small figure
    assert "SYNTHETIC DEMO DATA" in html.split('<section id="summary"')[0]


def test_long_tables_are_collapsed_and_every_csv_downloads(tree: dict[str, Any]) -> None:
    html, results = tree["html"], tree["results"]
    parser = _TableDepth()
    parser.feed(html)
    assert parser.tables
    for collapsed, rows in parser.tables:
        assert collapsed or rows <= 16, (collapsed, rows)  # a long table is one click away
    links = dict(re.findall(r'<a download="([^"]+)" href="data:text/csv;base64,([^"]+)"', html))
    for rel in ("bs/eval/summary.csv", "bs/eval/paired.csv", "cls/metrics.csv",
                "cls/comparison.csv", "cls/feature_space.csv", "cls/crm_boxes.csv"):
        name = Path(rel).name
        assert name in links, name
        assert base64.b64decode(links[name]) == (results / rel).read_bytes(), name
    # method names once: the paired table names its test in the caption, not in every row
    bs = html.split("<h2>Bone suppression</h2>")[1].split("<h2>")[0]
    assert bs.count("Wilcoxon signed-rank (per image)") == 1
    # figures before the collapsed tables, the forest plot and scatter first
    forest, scatter = bs.index("<figcaption>Every model minus identity"), bs.index(
        "<figcaption>One dot per test image")
    assert forest < scatter < bs.index("<details")


def test_report_fits_1280px_in_a_browser(tree: dict[str, Any], tmp_path: Path) -> None:
    """Chromium at 1280 x 900: the first screen answers, nothing is wider than the viewport
    (every <details> closed, and open), and the page is a few screens tall."""
    from report_browser import chromium, probe

    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    page = tree["results"] / "report.html"
    closed = probe(page, tmp_path / "closed")
    assert closed["broken"] == 0 and closed["images"] == 14
    assert closed["wide"] == [] and closed["width"] <= closed["viewport"], closed["wide"]
    first = closed["first_screen"]
    assert "Primary endpoint" in first and "shenzhen" in first and "No evidence either way" in first
    assert "PSNR gain" in first and "dB on des" in first
    assert closed["height"] <= 11000, closed["sections"]
    opened = probe(page, tmp_path / "open", open_details=True)
    assert opened["wide"] == [] and opened["height"] > closed["height"], opened["wide"]
