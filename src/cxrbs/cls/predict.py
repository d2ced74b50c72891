"""Classifier prediction: one preprocessing path for the workflow and for ``cxrbs predict``.

The workflow's images are preprocessed once into a uint16 stack at the preprocessing side
(``stack_size``, e.g. 256) and resized to the classifier's input side (e.g. 128) when loaded.
A file given to ``cxrbs predict`` takes exactly that route: preprocess at the checkpoint's
``stack_size`` with its percentiles, quantise to uint16, resize to its ``input_size``. Before,
the command preprocessed straight to the input side, which moved probabilities by up to 0.04.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from cxrbs.cls.train import predict_proba
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import read_image
from cxrbs.data.preprocess import preprocess, resize_images, to_uint16

__all__ = ["PREDICTION_COLUMNS", "fold_images", "predict_files", "predict_images",
           "prepare_image", "preprocessing_of"]

PREDICTION_COLUMNS = ["image", "probability"]


def _side(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CxrbsError(f"checkpoint image size {value} is not square: cxrbs predicts on "
                             "square images; pass --size")
        value = value[0]
    return int(value)


def preprocessing_of(meta: Mapping[str, Any], size: int | None = None) -> dict[str, Any]:
    """Stack side, input side and percentiles a checkpoint was trained with (``size`` overrides
    both sides, for checkpoints that predate them)."""
    input_size = size or _side(meta.get("input_size") or meta.get("image_size"))
    if input_size is None:
        raise CxrbsError(f"checkpoint {meta.get('path', '')} does not record its image size: "
                         "pass --size")
    stack_size = size or _side(meta.get("stack_size")) or input_size
    return {"stack_size": int(stack_size), "input_size": int(input_size),
            "low_pct": float(meta.get("low_pct", 1.0)),
            "high_pct": float(meta.get("high_pct", 99.0))}


def fold_images(stack: np.ndarray, input_size: int | None) -> np.ndarray:
    """A prepared uint16 (N,1,S,S) stack as the classifier sees it: float32 (N,s,s) in [0,1]."""
    return resize_images(stack, input_size)


def prepare_image(image: np.ndarray, *, stack_size: int, input_size: int | None,
                  low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """One decoded image through the workflow's route (see module docstring): float32 (s,s)."""
    row = to_uint16(preprocess(image, stack_size, low_pct=low_pct, high_pct=high_pct))
    return fold_images(row[None, None], input_size)[0]


def predict_images(model: nn.Module, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """P(class 1) per image of a float (N,s,s) or uint16 stack; the workflow's prediction."""
    return predict_proba(model, images, batch_size=batch_size)


def predict_files(model: nn.Module, meta: Mapping[str, Any], files: Iterable[Path], *,
                  batch_size: int = 32, size: int | None = None,
                  on_error: Callable[[Path, CxrbsError], None] | None = None) -> pd.DataFrame:
    """Probabilities for image files, preprocessed as the checkpoint's training data was.

    Without ``on_error`` the first unreadable file stops; with it, it is reported and skipped.
    """
    pre = preprocessing_of(meta, size)
    frames = []
    batch: list[np.ndarray] = []
    names: list[str] = []

    def flush() -> None:
        if batch:
            prob = predict_images(model, np.stack(batch), batch_size=batch_size)
            frames.append(pd.DataFrame({"image": names.copy(), "probability": prob},
                                       columns=PREDICTION_COLUMNS))
            batch.clear()
            names.clear()

    for path in files:  # memory stays flat: one batch of decoded images at a time
        try:
            batch.append(prepare_image(read_image(path), **pre))
        except CxrbsError as exc:
            if on_error is None:
                raise
            on_error(Path(path), exc)
            continue
        names.append(str(path))
        if len(batch) >= batch_size:
            flush()
    flush()
    if not frames:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return pd.concat(frames, ignore_index=True)
