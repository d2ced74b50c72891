"""Patient-level splits: no patient's images ever sit on both sides of a split.

Several collections hold more than one image per patient (follow-ups, a radiograph and its
augmented copies); splitting by image would leak a patient's anatomy into validation and inflate
every reported metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from cxrbs.core.errors import CxrbsError


def _as_ids(patient_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
    ids = np.asarray(patient_ids)
    if ids.ndim != 1:
        raise CxrbsError(f"patient ids must be a 1-D list, got shape {ids.shape}")
    return ids


def _as_labels(labels: Sequence[Any] | np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise CxrbsError(
            f"labels have shape {y.shape} but there are {n} patient ids: give one label per image"
        )
    return y


def _n_patients(ids: np.ndarray) -> int:
    return int(np.unique(ids).size)


def _val_patient_count(n_patients: int, val_fraction: float) -> int:
    """Round to the nearest patient count, keeping at least one patient on each side."""
    return min(max(round(val_fraction * n_patients), 1), n_patients - 1)


def patient_split(
    patient_ids: Sequence[Any] | np.ndarray,
    *,
    val_fraction: float,
    seed: int,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask per image, True = validation, grouping by patient.

    With labels, one fold of a stratified group k-fold (k = round(1 / val_fraction)) keeps the
    class balance of both sides; without, a group shuffle split hits the fraction of patients.
    """
    if not 0.0 < val_fraction < 1.0:
        raise CxrbsError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    ids = _as_ids(patient_ids)
    n_pat = _n_patients(ids)
    if n_pat < 2:
        raise CxrbsError(
            f"a validation split needs at least 2 patients, got {n_pat}: add data or "
            "check the patient id column of the manifest"
        )
    mask = np.zeros(ids.size, dtype=bool)
    if labels is None:
        n_val = _val_patient_count(n_pat, val_fraction)
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=n_val, train_size=n_pat - n_val, random_state=seed
        )
        _, val_idx = next(splitter.split(np.zeros(ids.size), groups=ids))
    else:
        y = _as_labels(labels, ids.size)
        k = min(max(round(1.0 / val_fraction), 2), n_pat)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # A rare class with fewer patients than k only loosens stratification here.
            warnings.filterwarnings("ignore", message="The least populated class")
            _, val_idx = next(splitter.split(np.zeros(ids.size), y, groups=ids))
    mask[val_idx] = True
    return mask


def patient_kfold(
    patient_ids: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    k: int = 4,
    seed: int,
) -> np.ndarray:
    """Fold index 0..k-1 per image; stratified by label, grouped by patient.

    A function of (patient ids, labels, k, seed) only, so the baseline and bone-suppressed
    runs that pass the same lists get the very same folds and their results can be paired.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise CxrbsError(f"k-fold cross-validation needs an integer k >= 2, got k={k!r}")
    ids = _as_ids(patient_ids)
    y = _as_labels(labels, ids.size)
    n_pat = _n_patients(ids)
    if n_pat < k:
        raise CxrbsError(
            f"k={k} folds need at least {k} patients, but there are only {n_pat} patients: "
            "lower k or add data"
        )
    for cls in np.unique(y):
        n_cls = _n_patients(ids[y == cls])
        if n_cls < k:
            raise CxrbsError(
                f"class {cls.item()!r} has only {n_cls} patient(s), too small for k={k} folds "
                f"({n_pat} patients in all): lower k or add data"
            )
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    folds = np.full(ids.size, -1, dtype=np.int64)
    for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(ids.size), y, groups=ids)):
        folds[test_idx] = fold
    counts = np.bincount(folds, minlength=k)
    if (counts == 0).any():
        raise CxrbsError(
            f"k={k} folds over {n_pat} patients left fold(s) "
            f"{np.flatnonzero(counts == 0).tolist()} empty: lower k"
        )
    return folds


def check_val_mask(val_mask: Any, patient_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A caller's validation mask, checked: one bool per image, both sides used, no patient on both.

    The deep model and the HOG floor must be scored on the same patients, so both take a mask
    made once by ``patient_split`` and both refuse one that would leak a patient.
    """
    ids = np.asarray(patient_ids)
    mask = np.asarray(val_mask)
    if mask.shape != ids.shape or mask.dtype != bool or mask.all() or not mask.any():
        raise CxrbsError(
            f"val_mask must be a boolean array with one entry per image ({ids.size}) and images "
            f"on both sides; got shape {mask.shape}, dtype {mask.dtype}"
        )
    shared = np.intersect1d(ids[mask], ids[~mask])
    if shared.size:
        raise CxrbsError(
            f"val_mask puts patient(s) {shared[:5].tolist()} in both training and validation: "
            "split by patient (cxrbs.data.splits)"
        )
    return mask
