"""Scoring the full-resolution path, the one ``cxrbs suppress`` runs on a user's radiograph.

The 256² stack evaluation (:mod:`cxrbs.bs.evaluate`) scores what the network sees. Users get
something else: the bone layer predicted at 256², mapped back to the input's intensity scale,
upsampled and subtracted at the input's own resolution (:func:`cxrbs.bs.suppress.suppress_image`).
This module scores that output on the original files. To make the numbers comparable with the
study's (and with the identity baseline on the same footing), output, target and input are then
resized to ``size``² and stretched with the SOURCE's percentile limits, as
:func:`cxrbs.data.preprocess.preprocess_pair` does in ``shared`` mode, and scored with the same
:func:`cxrbs.bs.metrics.image_quality`. The per-image table has the columns of the stack
evaluation, so :mod:`cxrbs.bs.paired_stats` tests it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.bs.metrics import image_quality
from cxrbs.core.errors import CxrbsError
from cxrbs.core.progress import progress_iter
from cxrbs.data.io import read_image
from cxrbs.data.preprocess import apply_stretch, resize_image, stretch_limits
from cxrbs.data.stacks import read_manifest
from cxrbs.core.config import HIGH_PCT, LOW_PCT

log = logging.getLogger(__name__)

__all__ = ["fullres_files", "evaluate_fullres", "score_fullres"]


def score_fullres(source: np.ndarray, output: np.ndarray, target: np.ndarray, *, size: int = 256,
                  low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT) -> dict[str, float]:
    """Metrics of a full-resolution ``output`` against ``target``, both on the source's scale."""
    if not (source.shape == output.shape == target.shape):
        raise CxrbsError(f"full-resolution scoring needs equal shapes, got source {source.shape}, "
                         f"output {output.shape}, target {target.shape}")
    src = resize_image(source.astype(np.float64), size)
    lo, hi = stretch_limits(src, low_pct, high_pct)

    def on_scale(img: np.ndarray) -> np.ndarray:
        return apply_stretch(resize_image(img.astype(np.float64), size), lo, hi)

    return image_quality(on_scale(source), on_scale(output), on_scale(target))


def fullres_files(manifests: Mapping[str, Path], *, split_csv: Path | None = None,
                  part: str | None = None,
                  exclude_patients: Collection[str] = ()) -> list[tuple[str, Path, Path]]:
    """(name, source file, target file) of a paired set: every row of its manifest, or, for the
    training set's ``val``/``test`` part, the rows ``split.csv`` assigns to that part; rows of
    ``exclude_patients`` (a pretrained model's own patients) are left out."""
    excluded = {str(p) for p in exclude_patients}
    frames = {name: read_manifest(path) for name, path in manifests.items()}
    for name, frame in frames.items():
        if "target_path" not in frame:
            raise CxrbsError(f"manifest of {name} lists no target_path: full-resolution scoring "
                             "needs a paired data set (layout: paired)")
    if split_csv is None:
        return [(str(r.pair_id), Path(r.image_path), Path(r.target_path))
                for frame in frames.values() for r in frame.itertuples(index=False)
                if str(r.patient_id) not in excluded]
    split = pd.read_csv(split_csv, dtype={"pair_id": str, "patient_id": str})
    split = split[split["split"] == part]
    split = split[~split["patient_id"].astype(str).isin(excluded)]
    rows = []
    for r in split.itertuples(index=False):
        if r.dataset not in frames:
            raise CxrbsError(f"{split_csv} names data set {r.dataset!r}, whose manifest was not "
                             f"given (have {', '.join(frames)})")
        m = frames[r.dataset]
        hit = m[m["index"] == r.index]
        if hit.empty:
            raise CxrbsError(f"{split_csv} row {r.pair_id} (index {r.index}) is not in the "
                             f"manifest of {r.dataset}: rerun prepare_bs_pairs")
        row = hit.iloc[0]
        rows.append((str(r.pair_id), Path(row["image_path"]), Path(row["target_path"])))
    return rows


def evaluate_fullres(model_path: Path | None, files: list[tuple[str, Path, Path]], *, arch: str,
                     test_set: str, size: int | None = None, flip_tta: bool = False,
                     progress: bool = True) -> pd.DataFrame:
    """Per-image metrics of the full-resolution path (``model_path=None``: identity baseline).

    ``size`` defaults to the model's input size (from its checkpoint), else 256.
    """
    model: Any = None
    low, high = LOW_PCT, HIGH_PCT
    if model_path is not None:
        from cxrbs.bs.predict import load_bs_model
        from cxrbs.bs.suppress import model_image_size

        model, meta = load_bs_model(model_path)
        size = size or model_image_size(meta)
        low, high = float(meta.get("low_pct", LOW_PCT)), float(meta.get("high_pct", HIGH_PCT))
    size = int(size or 256)
    rows = []
    for name, src_path, tgt_path in progress_iter(files, desc=f"{arch} on {test_set}",
                                                  bar=progress, unit="pair"):
        source, target = read_image(src_path), read_image(tgt_path)
        if source.shape != target.shape:
            raise CxrbsError(f"{src_path} is {source.shape} but its target {tgt_path} is "
                             f"{target.shape}: a pair must have one size")
        if model is None:
            output = source
        else:
            from cxrbs.bs.suppress import suppress_image

            output = suppress_image(model, source, size=size, low_pct=low, high_pct=high,
                                    flip_tta=flip_tta)
        rows.append({"arch": arch, "test_set": test_set, "name": name,
                     **score_fullres(source, output, target, size=size, low_pct=low,
                                     high_pct=high)})
    if not rows:
        raise CxrbsError(f"no pairs to score in test set {test_set!r}")
    return pd.DataFrame(rows)
