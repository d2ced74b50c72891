"""The classifier's lung crop (``cls.lung_crop``, issue 26 item 3): boxes from the lung masks,
the fallback box for images without one, crops and masks cut alike, one reading of the config
key, and fine-tuning that trains, predicts and records the crop on a task only the crop solves."""

from __future__ import annotations

import copy
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import yaml

from cxrbs.cls.lung_crop import (
    box_of_mask,
    crop_images,
    crop_masks,
    crop_settings,
    fallback_boxes,
    lung_crop_boxes,
    set_crop,
)
from cxrbs.config_checks import check_config, semantic_problems
from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import resize_images, to_uint16

ROOT = Path(__file__).resolve().parents[1]


def _mask(side: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    m = np.zeros((side, side), np.uint8)
    m[top:bottom, left:right] = 255
    return m


def test_box_of_mask_is_the_bounding_box_widened_by_the_margin_and_clipped() -> None:
    mask = _mask(100, 20, 10, 60, 90) > 0
    assert box_of_mask(mask, 0.0) == pytest.approx([0.2, 0.1, 0.6, 0.9])
    # 10% of the box's own height (0.4) and width (0.8) on each side
    assert box_of_mask(mask, 0.1) == pytest.approx([0.16, 0.02, 0.64, 0.98])
    assert box_of_mask(mask, 0.5) == pytest.approx([0.0, 0.0, 0.8, 1.0])  # clipped to the image
    with pytest.raises(CxrbsError, match="empty"):
        box_of_mask(np.zeros((8, 8), bool))


def test_boxes_come_from_the_masks_and_the_median_box_stands_in_for_a_missing_one(
        tmp_path: Path) -> None:
    for name, (t, l, b, r) in {"a": (0, 0, 128, 128), "b": (64, 64, 256, 256),
                               "c": (32, 32, 192, 192)}.items():
        iio.imwrite(tmp_path / f"{name}.png", _mask(256, t, l, b, r))
    crop = lung_crop_boxes(["a", "nomask", "b", "c"], tmp_path, margin=0.0)
    assert crop.has_mask.tolist() == [True, False, True, True]
    assert crop.boxes[0] == pytest.approx([0, 0, 0.5, 0.5])
    assert crop.fallback_box == pytest.approx([0.125, 0.125, 0.75, 0.75])
    assert crop.boxes[1] == pytest.approx(crop.fallback_box)
    record = crop.record()
    assert record["n_masks"] == 3 and record["n_images"] == 4
    assert record["mask_dir"] == str(tmp_path) and record["margin"] == 0.0
    yaml.safe_dump(record)  # plain types: it goes into checkpoints and JSON summaries
    assert fallback_boxes(record, 2) == pytest.approx(np.repeat(crop.fallback_box[None], 2, 0))
    with pytest.raises(CxrbsError, match="no fallback_box"):
        fallback_boxes({"margin": 0.05}, 1)
    with pytest.raises(CxrbsError, match="no image has a lung mask"):
        lung_crop_boxes(["x", "y"], tmp_path)
    with pytest.raises(CxrbsError, match=r"margin must be in \[0, 1\)"):
        lung_crop_boxes(["a"], tmp_path, margin=1.5)


def test_crop_cuts_each_image_to_its_box_from_uint16_or_float_stacks() -> None:
    img = np.full((64, 64), 0.1)
    img[16:48, 8:40] = 0.9  # the 'lungs'
    boxes = np.array([[0.25, 0.125, 0.75, 0.625]])
    for stack in (to_uint16(img[None, None]), img[None].astype(np.float32)):
        out = crop_images(stack, boxes, 16)
        assert out.shape == (1, 16, 16) and out.dtype == np.float32
        assert out.min() == pytest.approx(0.9, abs=2e-3)  # nothing but the box is left
    whole = resize_images(img[None].astype(np.float32), 16)
    assert whole.min() == pytest.approx(0.1, abs=2e-3)
    with pytest.raises(CxrbsError, match="boxes of shape"):
        crop_images(img[None], np.zeros((2, 4)), 16)


def test_masks_are_cut_like_their_images() -> None:
    lung = _mask(64, 16, 8, 48, 40) > 0
    box = box_of_mask(lung, 0.0)
    out = crop_masks([lung, None], np.stack([box, box]), 16)
    assert out[1] is None and out[0].shape == (16, 16) and out[0].all()
    wider = crop_masks([lung], box_of_mask(lung, 0.25)[None], 32)[0]
    assert 0.3 < wider.mean() < 0.9 and wider[16, 16] and not wider[0, 0]


def _tb_config(masks: str | None = "masks") -> dict:
    spec = {"role": "tb", "layout": "montgomery", "path": "data/mc"}
    if masks:
        spec["lung_masks"] = masks
    return {"datasets": {"mc": spec, "sz": {"role": "tb", "layout": "shenzhen", "path": "x"}},
            "cls": {"lung_crop": {"datasets": ["mc"], "margin": 0.1}}}


def test_crop_settings_is_the_one_reading_of_the_key() -> None:
    config = _tb_config()
    assert crop_settings(config, "mc") == {"mask_dir": "masks", "margin": 0.1}
    assert crop_settings(config, "sz") is None  # not listed: whole images
    assert crop_settings({"cls": {}}, "mc") is None
    with pytest.raises(CxrbsError, match="datasets.mc.lung_masks"):
        crop_settings(_tb_config(masks=None), "mc")


def test_config_names_a_cropped_set_without_masks_before_any_job() -> None:
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    tb = next(n for n, s in demo["datasets"].items() if s.get("role") == "tb")
    other = next(n for n, s in demo["datasets"].items() if s.get("role") != "tb")
    bad = copy.deepcopy(demo)
    bad["cls"]["lung_crop"] = {"datasets": [tb, other]}
    problems = semantic_problems(bad)
    assert any(f"'{tb}' has no lung masks" in p for p in problems), problems
    assert any(f"'{other}' is not a data set with role: tb" in p for p in problems), problems
    with pytest.raises(CxrbsError, match="cls.lung_crop.datasets"):
        check_config(bad, config_files=["my.yaml"])
    worse = copy.deepcopy(demo)
    worse["cls"]["lung_crop"] = {"datasets": [], "margin": 1.0}
    with pytest.raises(CxrbsError, match="margin"):
        check_config(worse, config_files=["my.yaml"])


def test_the_view_without_a_crop_is_the_plain_resize_and_boxes_are_the_whole_sets(
        tmp_path: Path) -> None:
    from cxrbs.cls.predict import fold_images

    rng = np.random.default_rng(0)
    stack = to_uint16(rng.uniform(0, 1, (3, 1, 32, 32)))
    assert set_crop(None, ["a", "b", "c"]) is None
    assert np.array_equal(fold_images(stack, 16), resize_images(stack, 16))
    iio.imwrite(tmp_path / "a.png", _mask(32, 8, 8, 24, 24))
    iio.imwrite(tmp_path / "c.png", _mask(32, 0, 0, 16, 16))
    crop = set_crop({"mask_dir": str(tmp_path), "margin": 0.0}, ["a", "b", "c"])
    assert crop is not None and crop.has_mask.tolist() == [True, False, True]
    # b has no mask: it takes the median over the whole set, not over whatever subset is asked
    assert crop.boxes[1] == pytest.approx(np.median(crop.boxes[[0, 2]], axis=0))
    assert np.array_equal(fold_images(stack, 16, crop.boxes), crop_images(stack, crop.boxes, 16))
    with pytest.raises(CxrbsError, match=r"lung mask of a in .*empty"):
        iio.imwrite(tmp_path / "a.png", np.zeros((32, 32), np.uint8))
        set_crop({"mask_dir": str(tmp_path)}, ["a"])


def _tb_set(tmp_path: Path, n: int = 64, side: int = 64) -> tuple[Path, Path, Path]:
    """A small TB-like set: noise images with a 'lung' box at a varying place, masks for all."""
    rng = np.random.default_rng(3)
    masks = tmp_path / "masks"
    masks.mkdir()
    images, rows = [], []
    for i in range(n):
        label = i % 2
        img = rng.uniform(0.2, 0.4, (side, side))
        t, l = rng.integers(4, 20), rng.integers(4, 20)
        img[t:t + 24, l:l + 24] += 0.3 * label
        images.append(img)
        name = f"MCUCXR_{i:04d}_{label}"
        iio.imwrite(masks / f"{name}.png", _mask(side, t, l, t + 24, l + 24))
        rows.append({"image_path": f"/data/{name}.png", "patient_id": str(i), "label": label,
                     "fold": i % 4})
    stack = tmp_path / "images.npy"
    np.save(stack, to_uint16(np.clip(np.stack(images), 0, 1)[:, None]))
    folds = tmp_path / "folds.csv"
    pd.DataFrame(rows).to_csv(folds, index=False)
    return stack, folds, masks


def test_finetune_fold_trains_on_crops_records_them_and_predicts_through_them(
        tmp_path: Path) -> None:
    from cxrbs.cls.pipeline import finetune_fold
    from cxrbs.cls.predict import predict_images
    from cxrbs.cls.train import ClsTrainConfig, load_classifier, train_classifier

    stack, folds, masks = _tb_set(tmp_path)
    init = tmp_path / "init"
    rng = np.random.default_rng(0)
    train_classifier("small_cnn", {"widths": [4, 8, 8, 8]}, rng.uniform(0, 1, (40, 16, 16)),
                     np.arange(40) % 2, np.arange(40).astype(str),
                     ClsTrainConfig(epochs=1, batch_size=8, seed=1, threads=1, device="cpu",
                                    val_fraction=0.25, collapse_check=False),
                     init, progress=False)  # fmt: skip
    train = {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "device": "cpu",
             "val_fraction": 0.25, "collapse_check": False}
    settings = {"mask_dir": str(masks), "margin": 0.0}
    runs = {}
    for name, crop in (("crop", settings), ("whole", None)):
        runs[name] = finetune_fold(stack, folds, dataset="mc", variant="baseline", fold=0,
                                   init_checkpoint=init / "model.pt", train_cfg=train, seed=1,
                                   outdir=tmp_path / name, threads=1, hog_floor=True,
                                   input_size=16, lung_crop=crop)
    model, meta = load_classifier(tmp_path / "crop" / "model.pt")
    assert meta["lung_crop"]["n_masks"] == 64 and meta["lung_crop"]["margin"] == 0.0
    assert meta["lung_crop"]["mask_dir"] == str(masks)
    assert load_classifier(tmp_path / "whole" / "model.pt")[1]["lung_crop"] is None
    preds = runs["crop"]
    assert set(preds["model"]) == {"deep", "hog_floor"} and len(preds) == 2 * 16
    # the held-out images went through their lung boxes, the whole set's (set_crop)
    from cxrbs.cls.predict import fold_images

    table = pd.read_csv(folds)
    held = table["fold"].to_numpy() == 0
    crop = set_crop(settings, [Path(p).stem for p in table["image_path"]])
    assert crop is not None
    view = fold_images(np.load(stack)[held], 16, crop.boxes[held])
    deep = preds[preds["model"] == "deep"]
    assert np.allclose(deep["probability"], predict_images(model, view), atol=1e-6)
    # the HOG floor saw the crops too: its held-out probabilities differ from the whole-image one
    hog = {k: r[r["model"] == "hog_floor"]["probability"].to_numpy() for k, r in runs.items()}
    assert not np.allclose(hog["crop"], hog["whole"], atol=1e-3)
    # `cxrbs predict` on files (no masks) crops them with the checkpoint's fallback box
    from cxrbs.cls.predict import predict_files, preprocessing_of
    from cxrbs.data.io import write_png
    from cxrbs.data.preprocess import preprocess

    pre = preprocessing_of(meta)
    assert pre["box"] == pytest.approx(meta["lung_crop"]["fallback_box"])
    raw = np.random.default_rng(1).uniform(0, 1, (2, 80, 70))
    files = []
    for i, img in enumerate(raw):
        files.append(tmp_path / f"new{i}.png")
        write_png(files[-1], img, bits=16)
    got = predict_files(model, meta, files)["probability"].to_numpy()
    rows = np.stack([to_uint16(preprocess(np.asarray(iio.imread(f)), pre["stack_size"],
                                          low_pct=pre["low_pct"], high_pct=pre["high_pct"]))
                     for f in files])[:, None]
    want = predict_images(model, crop_images(rows, fallback_boxes(meta["lung_crop"], 2), 16))
    assert np.allclose(got, want, atol=1e-6)


def test_annotation_boxes_follow_the_crop_in_the_relevance_figures() -> None:
    from cxrbs.explain.analysis import _FoldData, _scaled_boxes

    fold = _FoldData(dataset="mc", fold=0, first=True, names=["a"], labels=np.array([1]),
                     image_paths=["a.png"], sizes=[(200, 100)],
                     images={"baseline": np.zeros((1, 16, 16), np.float32)}, models={},
                     crop_boxes=np.array([[0.5, 0.5, 1.0, 1.0]]))
    # (x, y, w, h) in the original's pixels; the view shows its lower right quarter at 16 px
    assert _scaled_boxes(fold, 0, {"a": [(50.0, 100.0, 25.0, 50.0)]}) == [(0, 0, 8, 8)]
    fold.crop_boxes = None
    assert _scaled_boxes(fold, 0, {"a": [(50.0, 100.0, 25.0, 50.0)]}) == [(8, 8, 4, 4)]


def test_the_explain_stage_shows_each_fold_model_the_crops_it_was_trained_on(
        tmp_path: Path) -> None:
    """explain/analysis._fold_data: the held-out images of each fold, both arms, cut to the whole
    set's lung boxes (what fine-tuning used), with the boxes kept for the figures."""
    import shutil

    from cxrbs.cls.predict import fold_images
    from cxrbs.cls.train import ClsTrainConfig, train_classifier
    from cxrbs.core.layout import Layout
    from cxrbs.explain.analysis import _fold_data

    stack, folds, masks = _tb_set(tmp_path)
    (masks / "MCUCXR_0003_1.png").unlink()  # one image without a mask: the set's median box
    layout = Layout(tmp_path / "results")
    for dst in (layout.folds("mc"), layout.stack("mc"), layout.suppressed_stack("mc")):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folds if dst.suffix == ".csv" else stack, dst)
    rng = np.random.default_rng(0)
    train_classifier("small_cnn", {"widths": [4, 8, 8, 8]}, rng.uniform(0, 1, (40, 16, 16)),
                     np.arange(40) % 2, np.arange(40).astype(str),
                     ClsTrainConfig(epochs=1, batch_size=8, seed=1, threads=1, device="cpu",
                                    val_fraction=0.25, collapse_check=False),
                     tmp_path / "m", progress=False)  # fmt: skip
    for variant in ("baseline", "bone_suppressed"):
        for k in range(4):
            dst = layout.cls_fold_model("mc", variant, k)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "m" / "model.pt", dst)
    config = {"seed": 1, "datasets": {"mc": {"role": "tb", "lung_masks": str(masks)}},
              "cls": {"variants": ["baseline", "bone_suppressed"], "input_size": 16,
                      "lung_crop": {"datasets": ["mc"], "margin": 0.0}}}
    notes: list[tuple[str, str]] = []
    table = pd.read_csv(folds)
    crop = set_crop({"mask_dir": str(masks), "margin": 0.0},
                    [Path(p).stem for p in table["image_path"]])
    assert crop is not None and not crop.has_mask.all()
    seen = 0
    for fold in _fold_data(layout, config, "mc", lambda sec, text: notes.append((sec, text))):
        idx = np.flatnonzero(table["fold"].to_numpy() == fold.fold)
        want = fold_images(np.load(stack)[idx], 16, crop.boxes[idx])
        assert np.array_equal(fold.images["baseline"], want), fold.fold
        assert np.array_equal(fold.crop_boxes, crop.boxes[idx])
        assert not np.allclose(fold.images["baseline"], fold_images(np.load(stack)[idx], 16))
        seen += 1
    assert seen == 4 and not notes, notes
