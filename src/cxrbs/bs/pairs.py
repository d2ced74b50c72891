"""Bone-suppression training data: split pairs by patient, then augment only the training side.

The study's notebook augmented before splitting, so copies of one radiograph sat on both sides
of its validation split; here the split comes first and ``split.csv`` records it.
"""

from __future__ import annotations

import logging
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


def prepare_pairs(manifests: list[Path], stacks: list[Path], *, train_out: Path, val_out: Path,
                  split_out: Path, val_fraction: float, n_pairs: int, seed: int,
                  augment: dict[str, Any] | None = None, progress: bool = True) -> dict[str, int]:
    """Write ``train.npy`` (augmented, float32 (N,2,S,S)), ``val.npy`` (originals) and ``split.csv``."""
    pairs, frame = load_pair_sets(manifests, stacks)
    is_val = patient_split(frame["patient_key"].to_numpy(), val_fraction=val_fraction, seed=seed)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    opts = {k: v for k, v in (augment or {}).items() if k in AUGMENT_KEYS}
    if "zoom" in opts:
        opts["zoom"] = tuple(opts["zoom"])
    cfg = AugmentConfig(**opts)
    n_out = max(int(n_pairs), len(train_idx))
    if n_out > n_pairs:
        log.warning("n_pairs=%d is below the %d training originals; keeping all originals", n_pairs,
                    len(train_idx))
    for folder in {Path(p).parent for p in (train_out, val_out, split_out)}:
        ensure_dir(folder)  # also clears what a killed earlier run left behind
    with atomic_path(train_out) as tmp:
        out = open_memmap(tmp, np.float32, (n_out, *pairs.shape[1:]))
        _, origin = augment_pairs(pairs[train_idx], n_out, seed=seed, config=cfg, progress=progress,
                                  out=out)
        out.flush()
        del out
    save_npy(val_out, pairs[val_idx])
    split = frame[["dataset", "index", "patient_id", "pair_id"]].assign(
        split=np.where(is_val, "val", "train"),
        n_augmented=np.bincount(train_idx[origin], minlength=len(frame)),
    )
    write_csv(split_out, split)
    log.info("bone-suppression pairs: %d train originals -> %d augmented, %d validation",
             len(train_idx), n_out, len(val_idx))
    return {"train_originals": len(train_idx), "train": n_out, "val": len(val_idx)}
