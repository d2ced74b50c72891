"""Bone-suppression training data: split pairs by patient, then augment only the training side.

The study's notebook augmented before splitting, so copies of one radiograph sat on both sides
of its validation split; here the split comes first and ``split.csv`` records it.

Three parts, by patient (issue 12): ``train`` (augmented), ``val`` (early stopping and model
selection) and ``test`` (the within-institution test set, ``heldout_test``: only ever reported).
Selecting the model on a set and then reporting that set's score as a test result overstates it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.atomic import atomic_path, ensure_dir, open_memmap, save_npy, write_csv
from cxrbs.bs.augment import AugmentConfig, augment_pairs
from cxrbs.data.stacks import load_stack, read_manifest
from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import from_uint16
from cxrbs.data.splits import patient_split

log = logging.getLogger(__name__)

AUGMENT_KEYS = ("rotation", "shift", "hflip", "zoom", "filter_prob")


def load_pair_sets(manifests: list[Path], stacks: list[Path]) -> tuple[np.ndarray, pd.DataFrame]:
    """Concatenate several paired data sets; patient ids are prefixed by the data set's folder name."""
    arrays, frames = [], []
    for man_path, stack_path in zip(manifests, stacks, strict=True):
        stack = load_stack(stack_path)
        if stack.shape[1] != 2:
            raise CxrbsError(f"{stack_path} holds single images, not source/target pairs")
        frame = read_manifest(man_path)
        name = Path(man_path).parent.name
        frame = frame.assign(dataset=name, patient_key=name + ":" + frame["patient_id"].astype(str))
        arrays.append(from_uint16(np.asarray(stack)))
        frames.append(frame)
    return np.concatenate(arrays), pd.concat(frames, ignore_index=True)


def strata_of(patient_ids: np.ndarray, regex: str | None) -> np.ndarray | None:
    """The stratum of each patient: the first capture group (or whole match) of ``regex`` on the
    patient id, "" where it does not match; None without a regex."""
    if regex is None:
        return None
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise CxrbsError(f"bs.stratify_regex {regex!r} is not a valid regular expression: {exc}") \
            from exc
    out = []
    for pid in np.asarray(patient_ids).astype(str):
        m = pattern.search(pid)
        out.append("" if m is None else (m.group(1) if pattern.groups else m.group(0)))
    return np.asarray(out, dtype=object)


def split_pairs(patient_keys: np.ndarray, *, val_fraction: float, test_fraction: float,
                seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """'train', 'val' or 'test' per pair, grouped by patient.

    The test patients are drawn first (``test_fraction`` of all patients), then the validation
    patients from the rest, so that ``val_fraction`` stays a fraction of all patients. With
    ``test_fraction = 0`` the validation split is exactly the one earlier versions drew.
    With ``strata`` (one label per pair, see :func:`strata_of`) each stratum is split on its own,
    so e.g. JSRT's nodule and no-nodule patients are in every part in the same proportion; a
    stratum of fewer than 3 patients joins the largest one.
    """
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise CxrbsError(f"bs.val_fraction ({val_fraction}) + bs.test_fraction ({test_fraction}) "
                         "must leave patients for training (sum below 1, test_fraction >= 0)")
    keys = np.asarray(patient_keys)
    if strata is not None:
        strata = np.asarray(strata, dtype=object).copy()
        sizes = {s: len(set(keys[strata == s])) for s in set(strata)}
        largest = max(sizes, key=lambda s: (sizes[s], str(s)))
        for s, n in sizes.items():
            if n < 3:
                strata[strata == s] = largest
        split = np.full(keys.size, "train", dtype=object)
        for s in sorted(set(strata), key=str):
            idx = np.flatnonzero(strata == s)
            split[idx] = split_pairs(keys[idx], val_fraction=val_fraction,
                                     test_fraction=test_fraction, seed=seed)
        return split
    split = np.full(keys.size, "train", dtype=object)
    if test_fraction > 0:
        split[patient_split(keys, val_fraction=test_fraction, seed=seed)] = "test"
    rest = np.flatnonzero(split != "test")
    is_val = patient_split(keys[rest], val_fraction=val_fraction / (1.0 - test_fraction),
                           seed=seed)
    split[rest[is_val]] = "val"
    return split


def prepare_pairs(manifests: list[Path], stacks: list[Path], *, train_out: Path, val_out: Path,
                  split_out: Path, val_fraction: float, n_pairs: int, seed: int,
                  augment: dict[str, Any] | None = None, progress: bool = True,
                  test_out: Path | None = None, test_fraction: float = 0.0,
                  stratify_regex: str | None = None) -> dict[str, int]:
    """Write ``train.npy`` (augmented, float32 (N,2,S,S)), ``val.npy`` and ``test.npy`` (originals)
    and ``split.csv`` (train/val/test per pair)."""
    if test_fraction > 0 and test_out is None:
        raise CxrbsError("prepare_pairs: test_fraction > 0 needs test_out (where test.npy goes)")
    pairs, frame = load_pair_sets(manifests, stacks)
    split_of = split_pairs(frame["patient_key"].to_numpy(), val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=seed,
                           strata=strata_of(frame["patient_id"].to_numpy(), stratify_regex))
    train_idx = np.flatnonzero(split_of == "train")
    val_idx, test_idx = np.flatnonzero(split_of == "val"), np.flatnonzero(split_of == "test")
    opts = {k: v for k, v in (augment or {}).items() if k in AUGMENT_KEYS}
    if "zoom" in opts:
        opts["zoom"] = tuple(opts["zoom"])
    cfg = AugmentConfig(**opts)
    n_out = max(int(n_pairs), len(train_idx))
    if 0 < n_pairs < n_out:
        log.warning("n_pairs=%d is below the %d training originals; keeping all originals", n_pairs,
                    len(train_idx))
    outs = [p for p in (train_out, val_out, split_out, test_out) if p is not None]
    for folder in {Path(p).parent for p in outs}:
        ensure_dir(folder)  # also clears what a killed earlier run left behind
    with atomic_path(train_out) as tmp:
        out = open_memmap(tmp, np.float32, (n_out, *pairs.shape[1:]))
        _, origin = augment_pairs(pairs[train_idx], n_out, seed=seed, config=cfg, progress=progress,
                                  out=out)
        out.flush()
        del out
    save_npy(val_out, pairs[val_idx])
    if test_out is not None:
        save_npy(test_out, pairs[test_idx])
    split = frame[["dataset", "index", "patient_id", "pair_id"]].assign(
        split=split_of.astype(str),
        n_augmented=np.bincount(train_idx[origin], minlength=len(frame)),
    )
    write_csv(split_out, split)
    log.info("bone-suppression pairs: %d train originals -> %d augmented, %d validation, %d test",
             len(train_idx), n_out, len(val_idx), len(test_idx))
    return {"train_originals": len(train_idx), "train": n_out, "val": len(val_idx),
            "test": len(test_idx)}
