"""HOG + logistic regression floor: features, learning a blob task, pickle-free save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrbs.core.errors import CxrbsError
from cxrbs.cls.hog_floor import HogFloor, hog_features, train_hog_floor
from cxrbs.data.preprocess import from_uint16, to_uint16
from cxrbs.data.splits import patient_split


def blob_data(n_patients: int = 24, per_patient: int = 2, size: int = 32, seed: int = 0):
    """Flat background, mild noise; class 1 (odd patients) has a blob in the upper half."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_patients), per_patient)
    y = ids % 2
    yy, xx = np.mgrid[:size, :size]
    imgs = 0.3 + rng.uniform(-0.025, 0.025, (ids.size, size, size))
    for i in np.flatnonzero(y):
        cy, cx = rng.uniform(4, size / 2 - 4), rng.uniform(6, size - 6)
        imgs[i] += 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    return np.clip(imgs, 0, 1).astype(np.float32), y, ids


@pytest.fixture(scope="module")
def data():
    return blob_data()


def test_feature_sizes_follow_the_hog_geometry(data) -> None:
    imgs, _, _ = data
    # 32 px / 8 px cells = 4 cells -> 3 x 3 blocks of 2 x 2 cells x 9 orientations.
    assert hog_features(imgs[:3], size=32).shape == (3, 3 * 3 * 4 * 9)
    # Default 128 px: 16 cells -> 15 x 15 blocks -> 8100 features.
    assert hog_features(imgs[:1]).shape == (1, 15 * 15 * 4 * 9)
    assert hog_features(imgs[:2], size=32, orientations=6).shape == (2, 3 * 3 * 4 * 6)


def test_uint16_stack_gives_the_same_features(data) -> None:
    imgs, _, _ = data
    # HOG's orientation bins jump on flat noise, so compare against the de-quantised floats.
    stack = to_uint16(imgs[:4])[:, None]
    f16 = hog_features(stack, size=32)
    np.testing.assert_array_equal(f16, hog_features(from_uint16(stack)[:, 0], size=32))
    assert f16.std() > 0.01  # not all zero features


def test_floor_learns_the_blob_task(data) -> None:
    imgs, y, ids = data
    val = patient_split(ids, val_fraction=0.25, seed=1, labels=y)
    floor, report = train_hog_floor(imgs, y, ids, val_mask=val, seed=1, size=32)
    prob = floor.predict_proba(imgs[val])
    assert roc_auc_score(y[val], prob) > 0.8
    assert report["val_auc"] == pytest.approx(roc_auc_score(y[val], prob), abs=1e-12)
    assert report["n_val"] == int(val.sum()) and report["n_train"] == int((~val).sum())
    assert ((prob >= 0) & (prob <= 1)).all()


def test_save_load_round_trip_is_exact_and_pickle_free(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    floor = HogFloor(C=0.05, size=32).fit(imgs[:36], y[:36], seed=0)
    path = tmp_path / "floor.npz"
    floor.save(path)
    with np.load(path, allow_pickle=False) as npz:  # loads without pickle
        assert npz["coef"].shape == (324,)
    loaded = HogFloor.load(path)
    assert loaded.params == floor.params and loaded.params["C"] == 0.05
    np.testing.assert_array_equal(loaded.predict_proba(imgs[36:]), floor.predict_proba(imgs[36:]))


def test_floor_errors_name_the_problem(data, tmp_path: Path) -> None:
    imgs, y, ids = data
    with pytest.raises(CxrbsError, match="missing.npz"):
        HogFloor.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(CxrbsError, match="bad.npz"):
        HogFloor.load(bad)
    with pytest.raises(CxrbsError, match="not fitted"):
        HogFloor(size=32).predict_proba(imgs[:2])
    with pytest.raises(CxrbsError, match="both classes"):
        HogFloor(size=32).fit(imgs[:4], np.zeros(4, dtype=int))
    mixed = np.zeros(y.size, dtype=bool)
    mixed[0] = True  # patient 0's second image stays in training
    with pytest.raises(CxrbsError, match="both training and validation"):
        train_hog_floor(imgs, y, ids, val_mask=mixed, seed=0, size=32)
    with pytest.raises(CxrbsError, match="shape"):
        hog_features(imgs[0])
