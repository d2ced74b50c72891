"""Manifests from the real folder layouts, and the preprocessed stacks built from them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cxrbs.data.stacks import build_stack, load_stack
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png
from cxrbs.data.manifests import build_manifest
from cxrbs.data.phantom_layouts import write_layout


def test_real_bse_jsrt_pairs(shared_data: Path) -> None:
    frame = build_manifest(shared_data / "bse-jsrt", "paired")
    assert len(frame) == 128
    assert frame["patient_id"].is_unique  # one radiograph per JSRT patient
    assert all(Path(s).name == Path(t).name for s, t in zip(frame.image_path, frame.target_path))
    assert frame["pair_id"].str.match(r"^JPC[LN]N\d{3}$").all()


def test_real_cxr8_patients_group_follow_ups(shared_data: Path) -> None:
    frame = build_manifest(shared_data / "cxr8", "class_folders",
                           classes={"normal": 0, "pneumonia": 1}, patient_regex=r"^(\d{8})_\d{3}$")
    assert len(frame) == 420 + 399
    assert frame["label"].sum() == 399
    counts = frame.groupby("patient_id").size()
    assert counts.max() > 1  # follow-ups share a patient id, so splits must group them
    assert frame["patient_id"].str.fullmatch(r"\d{8}").all()


def test_real_tb_samples(shared_data: Path) -> None:
    shenzhen = build_manifest(shared_data / "tb-sample" / "shenzhen", "shenzhen")
    assert len(shenzhen) == 17 and shenzhen["label"].sum() == 3
    montgomery = build_manifest(shared_data / "tb-sample" / "montgomery", "montgomery")
    assert len(montgomery) == 2 and montgomery["label"].sum() == 0


def test_montgomery_masks_are_not_radiographs(tmp_path: Path) -> None:
    root = write_layout("montgomery", tmp_path / "mc", 4, size=64, seed=1)
    mask_dir = root / "ManualMask" / "leftMask"
    mask_dir.mkdir(parents=True)
    first = sorted(root.glob("MCUCXR_*.png"))[0]
    write_png(mask_dir / first.name, np.ones((64, 64)))
    frame = build_manifest(root, "montgomery")
    assert len(frame) == 4
    assert not frame["image_path"].str.contains("Mask").any()


def test_pairs_without_partner_are_named(tmp_path: Path) -> None:
    root = write_layout("pairs", tmp_path / "p", 3, size=64, seed=0)
    victim = sorted((root / "target").iterdir())[0]
    victim.unlink()
    with pytest.raises(CxrbsError, match=victim.stem):
        build_manifest(root, "paired")


def test_unknown_file_in_class_folder(tmp_path: Path) -> None:
    root = write_layout("cxr8", tmp_path / "c", 6, size=64, seed=0)
    stray = root / "normal" / "notes.txt"
    stray.write_text("not an image")
    with pytest.raises(CxrbsError, match="notes.txt"):
        build_manifest(root, "class_folders", classes={"normal": 0, "abnormal": 1})


def test_non_utf8_file_name_in_error(tmp_path: Path) -> None:
    root = write_layout("cxr8", tmp_path / "c", 6, size=64, seed=0)
    bad = os.path.join(os.fsencode(root / "normal"), b"scan\xff.txt")
    with open(bad, "wb") as fh:
        fh.write(b"x")
    with pytest.raises(CxrbsError, match="scan"):
        build_manifest(root, "class_folders", classes={"normal": 0, "abnormal": 1})


def test_mismatched_pair_sizes_name_both_files(tmp_path: Path) -> None:
    root = write_layout("pairs", tmp_path / "p", 2, size=64, seed=0)
    target = sorted((root / "target").iterdir())[0]
    write_png(target, np.zeros((48, 64)))
    frame = build_manifest(root, "paired")
    out = tmp_path / "stack" / "images.npy"
    with pytest.raises(CxrbsError, match=target.name):
        build_stack(frame, out, size=32, progress=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no half-written stack under any name


def test_stack_matches_manifest_rows(tmp_path: Path) -> None:
    root = write_layout("shenzhen", tmp_path / "s", 6, size=64, seed=3)
    frame = build_manifest(root, "shenzhen")
    out = build_stack(frame, tmp_path / "images.npy", size=32, progress=False)
    stack = load_stack(out)
    assert stack.shape == (6, 1, 32, 32) and stack.dtype == np.uint16
    assert stack.max() == 65535 and stack.min() == 0  # percentile stretch saturates both ends
    assert list(frame["index"]) == list(range(6))


def test_manifest_records_each_originals_size_spacing_and_polarity(tmp_path: Path) -> None:
    """The one decode that builds the stack also records the originals' facts (issue 21): a PNG
    has no detector spacing, a MONOCHROME1 DICOM keeps its stored polarity and PixelSpacing."""
    import pandas as pd

    from cxrbs.data.stacks import IMAGE_META_COLUMNS, build_stack_with_meta
    from tests.test_io import make_dicom

    rng = np.random.default_rng(0)
    png = tmp_path / "a.png"
    write_png(png, rng.uniform(0, 1, (70, 50)), bits=16)
    dcm = make_dicom(tmp_path / "b.dcm", rng.integers(0, 4095, (60, 80)),
                     photometric="MONOCHROME1", PixelSpacing=[0.15, 0.2])
    frame = pd.DataFrame({"index": [0, 1], "image_path": [str(png), str(dcm)],
                          "patient_id": ["p1", "p2"], "label": [0, 1]})
    out, table = build_stack_with_meta(frame, tmp_path / "images.npy", size=32, progress=False)
    assert load_stack(out).shape == (2, 1, 32, 32)
    assert list(table.columns) == [*frame.columns, *IMAGE_META_COLUMNS]
    png_row, dcm_row = table.iloc[0], table.iloc[1]
    assert (png_row["original_height"], png_row["original_width"]) == (70, 50)
    assert pd.isna(png_row["pixel_spacing_row_mm"]) and png_row["photometric"] == "MONOCHROME2"
    assert (dcm_row["original_height"], dcm_row["original_width"]) == (60, 80)
    assert (dcm_row["pixel_spacing_row_mm"], dcm_row["pixel_spacing_col_mm"]) == (0.15, 0.2)
    assert (dcm_row["photometric"], dcm_row["source_format"]) == ("MONOCHROME1", "DICOM")
    # rebuilt from a manifest that already has the columns: replaced, not duplicated
    _, again = build_stack_with_meta(table, tmp_path / "images2.npy", size=32, progress=False)
    assert list(again.columns) == list(table.columns)


def test_boxes_are_scaled_with_the_manifests_sizes_without_opening_the_originals(
        tmp_path: Path) -> None:
    import pandas as pd

    from cxrbs.explain import analysis

    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"index": [0, 1], "image_path": ["gone/a.png", "gone/b.png"],
                  "original_height": [200, 100], "original_width": [100, 400]}).to_csv(manifest)
    folds = pd.DataFrame({"index": [1, 0], "image_path": ["gone/b.png", "gone/a.png"]})
    sizes = analysis._original_sizes(manifest, folds)
    assert sizes == [(100, 400), (200, 100)]
    fold = analysis._FoldData(dataset="s", fold=0, first=True, names=["b", "a"],
                              labels=np.array([1, 0]), image_paths=list(folds["image_path"]),
                              sizes=sizes, images={"baseline": np.zeros((2, 50, 50))}, models={})
    # the originals do not exist: reading them would fail, the manifest's sizes suffice
    assert analysis._scaled_boxes(fold, 0, {"b": [(40.0, 10.0, 80.0, 20.0)]}) == [
        (5.0, 5.0, 10.0, 10.0)]
    assert analysis._original_sizes(tmp_path / "missing.csv", folds) == [None, None]
