"""Patient-level splits: no patient on two sides, stratified, deterministic, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbs.core.errors import CxrbsError
from cxrbs.data.splits import patient_kfold, patient_split


def _cohort(n_patients: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Patients with 1-3 images each; label per patient, 40% positive."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 4, n_patients)
    ids = np.repeat([f"P{i:03d}" for i in range(n_patients)], counts)
    patient_label = (np.arange(n_patients) % 5 < 2).astype(int)
    return ids, np.repeat(patient_label, counts)


def _patients_in_one_group(ids: np.ndarray, groups: np.ndarray) -> bool:
    return all(np.unique(groups[ids == p]).size == 1 for p in np.unique(ids))


def test_patient_split_groups_by_patient_without_labels() -> None:
    ids, _ = _cohort()
    val = patient_split(ids, val_fraction=0.2, seed=3)
    assert val.dtype == bool and val.shape == ids.shape
    assert _patients_in_one_group(ids, val)
    assert np.unique(ids[val]).size == 8  # round(0.2 * 40) patients
    np.testing.assert_array_equal(val, patient_split(ids, val_fraction=0.2, seed=3))
    assert not np.array_equal(val, patient_split(ids, val_fraction=0.2, seed=4))


def test_patient_split_stratified_with_labels() -> None:
    ids, labels = _cohort(60)
    val = patient_split(ids, val_fraction=0.25, seed=1, labels=labels)
    assert _patients_in_one_group(ids, val)
    n_val_pat = np.unique(ids[val]).size
    assert 10 <= n_val_pat <= 20  # one of 4 folds over 60 patients
    pos_val = np.unique(ids[val & (labels == 1)]).size
    assert abs(pos_val / n_val_pat - 0.4) < 0.15


def test_patient_split_keeps_a_patient_on_each_side() -> None:
    ids = np.array(["a", "a", "b"])
    for frac in (0.01, 0.5, 0.99):
        val = patient_split(ids, val_fraction=frac, seed=0)
        assert val.any() and (~val).any()
        assert _patients_in_one_group(ids, val)
    val = patient_split(ids, val_fraction=0.1, seed=0, labels=[0, 0, 1])
    assert val.any() and (~val).any()


def test_patient_split_errors() -> None:
    with pytest.raises(CxrbsError, match="at least 2 patients"):
        patient_split(["x", "x", "x"], val_fraction=0.2, seed=0)
    with pytest.raises(CxrbsError, match="val_fraction"):
        patient_split(["x", "y"], val_fraction=1.0, seed=0)
    with pytest.raises(CxrbsError, match="labels"):
        patient_split(["x", "y"], val_fraction=0.5, seed=0, labels=[1])


def test_patient_kfold_groups_stratifies_and_covers() -> None:
    ids, labels = _cohort(80)
    folds = patient_kfold(ids, labels, k=4, seed=7)
    assert folds.shape == ids.shape and set(folds.tolist()) == {0, 1, 2, 3}
    assert _patients_in_one_group(ids, folds)
    for f in range(4):
        pats = np.unique(ids[folds == f])
        assert 14 <= pats.size <= 26  # about 20 of 80 patients
        pos_share = np.mean(labels[folds == f])
        assert abs(pos_share - labels.mean()) < 0.12


def test_patient_kfold_is_reproducible_across_runs() -> None:
    ids, labels = _cohort(50)
    # the baseline and bone-suppressed runs each call it with the same lists and seed
    baseline = patient_kfold(list(ids), list(labels), k=4, seed=11)
    bone_suppressed = patient_kfold(list(ids), list(labels), k=4, seed=11)
    np.testing.assert_array_equal(baseline, bone_suppressed)
    # and it depends on the patients, not on the order of the manifest rows
    perm = np.random.default_rng(0).permutation(ids.size)
    shuffled = patient_kfold(ids[perm], labels[perm], k=4, seed=11)
    np.testing.assert_array_equal(shuffled, baseline[perm])
    assert not np.array_equal(baseline, patient_kfold(ids, labels, k=4, seed=12))


def test_patient_kfold_too_few_patients() -> None:
    with pytest.raises(CxrbsError, match=r"k=4.*3 patients"):
        patient_kfold(["a", "b", "c", "c"], [0, 1, 0, 0], k=4, seed=0)
    ids = [f"p{i}" for i in range(10)]
    labels = [1, 1, 1] + [0] * 7  # 3 positive patients cannot fill 4 folds
    with pytest.raises(CxrbsError, match=r"class 1 has only 3 patient.*too small for k=4"):
        patient_kfold(ids, labels, k=4, seed=0)
    with pytest.raises(CxrbsError, match="k >= 2"):
        patient_kfold(ids, labels, k=1, seed=0)
