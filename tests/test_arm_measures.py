"""The arm measures (issue 26 item 4): bone left and relevance inside the lung masks per arm, and
the classes' silhouette per arm with a CI, on constructed inputs whose answers are known."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import to_uint16
from cxrbs.data.lung_masks import read_mask, read_masks
from cxrbs.explain.arm_measures import (
    COMPARISONS,
    TEST_COLUMNS,
    DatasetInputs,
    arm_tests,
    bone_rms,
    measure_dataset,
    per_image_silhouette,
    share_inside,
    silhouette_table,
)


class HalfBone(nn.Module):
    """A 'bone-suppression model' that keeps half the image: its bone estimate is x / 2."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class BrightNet(nn.Module):
    """A GAP + linear classifier whose features are the image itself: relevance = brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.fc.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(feats.mean(dim=(2, 3)))


def test_bone_rms_is_the_rms_of_the_estimate_inside_the_mask() -> None:
    images = np.zeros((2, 4, 4))
    images[0, :2] = 0.8
    predicted = images * 0.5
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    out = bone_rms(images, predicted, [mask, None])
    assert out[0] == pytest.approx(0.4) and np.isnan(out[1])


def test_share_inside_is_the_mass_fraction_and_nan_without_relevance() -> None:
    heat = np.array([[1.0, 3.0], [0.0, 0.0]])
    mask = np.array([[True, False], [False, False]])
    assert share_inside(heat, mask) == pytest.approx(0.25)
    assert np.isnan(share_inside(np.zeros((2, 2)), mask)) and np.isnan(share_inside(heat, None))


def test_silhouette_separates_separated_classes_and_is_nan_with_one() -> None:
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 0.1, (10, 3)), rng.normal(5, 0.1, (10, 3))])
    labels = np.array([0] * 10 + [1] * 10)
    assert per_image_silhouette(feats, labels).min() > 0.9
    assert np.isnan(per_image_silhouette(feats, np.zeros(20, int))).all()


def test_masks_are_thresholded_resized_and_errors_name_the_file(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    mask[0, 40] = 100  # an interpolated edge grey level below 128: outside
    iio.imwrite(tmp_path / "CXR_1_0.png", mask)
    small = read_mask(tmp_path / "CXR_1_0.png", 16)
    assert small.shape == (16, 16) and small[:, :7].all() and not small[:, 9:].any()
    (tmp_path / "CXR_2_1.png").write_bytes(b"not a png")
    with pytest.raises(CxrbsError, match="CXR_2_1.png"):
        read_masks(tmp_path, ["CXR_1_0", "CXR_2_1"], 16)
    assert set(read_masks(tmp_path, ["CXR_1_0", "CXR_9_0"], 16)) == {"CXR_1_0"}
    with pytest.raises(CxrbsError, match="lung_masks"):
        read_masks(tmp_path / "absent", ["CXR_1_0"], 16)
    assert read_masks(None, ["CXR_1_0"], 16) == {}


def _per_image(shift: float, n: int = 30, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.02, 0.05, n)
    rows = []
    for arm, values in (("baseline", base), ("bone_suppressed", base - shift),
                        ("control", base + rng.normal(0, 1e-3, n))):
        for i in range(n):
            rows.append({"dataset": "tb", "image": f"img{i}", "label": i % 2, "fold": i % 3,
                         "arm": arm, "has_mask": True, "lung_fraction": 0.3,
                         "bone_rms": values[i], "relevance_in_lungs": 0.5 + 0.01 * values[i],
                         "silhouette": values[i] * 10})
    return pd.DataFrame(rows)


def test_arm_tests_find_a_real_shift_and_adjust_over_the_family() -> None:
    tests = arm_tests(_per_image(0.015))
    assert list(tests.columns) == TEST_COLUMNS
    assert len(tests) == 2 * len(COMPARISONS)
    row = tests[(tests["measure"] == "bone_rms")
                & (tests["comparison"] == "bone_suppressed − baseline")].iloc[0]
    assert row["difference"] == pytest.approx(-0.015) and row["ci_high"] < 0
    assert row["p_holm"] < 0.001 and (tests["p_holm"] >= tests["p_value"] - 1e-15).all()
    none = arm_tests(_per_image(0.0))
    same = none[none["comparison"] == "bone_suppressed − baseline"]
    assert same["p_value"].isna().all()  # identical values: nothing to test, not p = 1


def test_silhouette_table_pairs_the_arms_and_brackets_the_mean() -> None:
    table = silhouette_table(_per_image(0.015), n_boot=300, seed=3).set_index("arm")
    assert (table["ci_low"] <= table["silhouette"]).all()
    assert (table["silhouette"] <= table["ci_high"]).all()
    bs = table.loc["bone_suppressed"]
    assert bs["difference_vs_baseline"] == pytest.approx(-0.15)
    assert bs["difference_ci_high"] < 0 and np.isnan(table.loc["baseline",
                                                               "difference_vs_baseline"])
    again = silhouette_table(_per_image(0.015), n_boot=300, seed=3).set_index("arm")
    pd.testing.assert_frame_equal(table, again)  # the seed fixes the resamples
    with pytest.raises(CxrbsError, match="n_boot"):
        silhouette_table(_per_image(0.0), n_boot=0, seed=3)


def test_measure_dataset_scores_each_image_with_its_arms_fold_model(tmp_path: Path) -> None:
    n, side = 8, 32
    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.8, (n, 1, side, side))
    arms = {"baseline": base, "bone_suppressed": base * 0.5}
    stacks = {}
    for arm, arr in arms.items():
        stacks[arm] = tmp_path / f"{arm}.npy"
        np.save(stacks[arm], to_uint16(arr))
    names = [f"CXR_{i:02d}_{i % 2}" for i in range(n)]
    pd.DataFrame({"image_path": [f"/data/{m}.png" for m in names], "patient_id": names,
                  "label": [i % 2 for i in range(n)], "fold": [i % 2 for i in range(n)]}
                 ).to_csv(tmp_path / "folds.csv", index=False)
    masks = tmp_path / "masks"
    masks.mkdir()
    lung = np.zeros((64, 64), np.uint8)
    lung[16:48, 8:56] = 255
    for m in names[:6]:  # two images have no mask
        iio.imwrite(masks / f"{m}.png", lung)
    models = {arm: {k: tmp_path / f"{arm}{k}.pt" for k in (0, 1)} for arm in arms}
    for paths in models.values():
        for p in paths.values():
            p.touch()
    loaded: list[Path] = []

    def load(path: Path) -> nn.Module:
        loaded.append(path)
        return BrightNet()

    inp = DatasetInputs(name="tb", folds_csv=tmp_path / "folds.csv", stacks=stacks,
                        models=models, mask_dir=masks)
    out = measure_dataset(inp, HalfBone(), load, input_size=16, crm_threshold=0.0,
                          progress=False)
    assert len(out) == 2 * n and set(loaded) == {p for d in models.values() for p in d.values()}
    have = out[out["has_mask"]]
    assert len(have) == 2 * 6 and out.loc[~out["has_mask"], "bone_rms"].isna().all()
    wide = have.pivot(index="image", columns="arm", values="bone_rms")
    # HalfBone's bone estimate is half the image: the suppressed arm (half as bright) keeps half
    assert np.allclose(wide["bone_suppressed"] / wide["baseline"], 0.5, rtol=0.02)
    lungs = have["lung_fraction"].iloc[0]
    assert lungs == pytest.approx(0.5 * 0.75, abs=0.05)
    # relevance follows brightness, which is uniform in expectation: about the lungs' share
    assert have["relevance_in_lungs"].between(lungs - 0.1, lungs + 0.1).all()
    # Where the classifiers saw lung crops (cls.lung_crop), the maps are taken on the crops and
    # the masks are cut alike: with no margin the lungs fill the view. Bone is measured on the
    # whole image either way.
    inp.lung_crop = {"mask_dir": str(masks), "margin": 0.0}
    cropped = measure_dataset(inp, HalfBone(), load, input_size=16, crm_threshold=0.0,
                              progress=False)
    have_c = cropped[cropped["has_mask"]]
    assert have_c["relevance_in_lungs"].min() > 0.95 and have_c["lung_fraction"].min() > 0.95
    assert np.allclose(cropped["bone_rms"], out["bone_rms"], equal_nan=True)
    assert not np.allclose(cropped["silhouette"], out["silhouette"])
    with pytest.raises(CxrbsError, match="baseline"):
        DatasetInputs(name="tb", folds_csv=tmp_path / "folds.csv",
                      stacks={"control": stacks["baseline"]}, models={})
    models["bone_suppressed"][1].unlink()
    with pytest.raises(CxrbsError, match="bone_suppressed fold 1"):
        measure_dataset(inp, HalfBone(), load, input_size=16, progress=False)
