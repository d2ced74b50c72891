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

import torch
from torch import Tensor

from cxrbs.core.device import autocast_context
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import read_image
from cxrbs.data.preprocess import from_uint16, preprocess, resize_images, to_uint16
from cxrbs.training import loop
from cxrbs.core.config import HIGH_PCT, LOW_PCT

__all__ = ["PREDICTION_COLUMNS", "fold_images", "predict_files", "predict_images",
           "predict_proba", "prepare_image", "preprocessing_of"]

PREDICTION_COLUMNS = ["image", "probability"]


def _check_images(images: np.ndarray) -> tuple[int, int]:
    """(H, W) of an (N,H,W) float or (N,C,H,W) uint16/float stack, else a clear error."""
    shape_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[1] in (1, 3))
    dtype_ok = images.dtype == np.uint16 or np.issubdtype(images.dtype, np.floating)
    if not (shape_ok and dtype_ok) or images.shape[0] == 0:
        raise CxrbsError(
            f"classifier images must be (N,H,W) float32 in [0,1] or a uint16 (N,1,H,W) stack; "
            f"got shape {images.shape}, dtype {images.dtype}: rebuild the prepared data"
        )
    return int(images.shape[-2]), int(images.shape[-1])


def _load_batch(images: np.ndarray, idx: np.ndarray) -> Tensor:
    """Float32 (B,C,H,W) for some rows only: a whole stack in float would not fit in memory."""
    arr = images[idx]
    if arr.dtype == np.uint16:
        x = from_uint16(arr)
    else:
        x = np.asarray(arr, dtype=np.float32)
        if not np.isfinite(x).all() or x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise CxrbsError(
                "classifier images must be finite and in [0, 1]: run them through "
                "cxrbs.data.preprocess first"
            )
    if x.ndim == 3:
        x = x[:, None]
    return torch.from_numpy(np.ascontiguousarray(x))


_chunks = loop.chunks


def _forward(model: nn.Module, x: Tensor, device: torch.device, amp: str, cl: bool) -> Tensor:
    x = x.to(device, non_blocking=True)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_context(device, amp):
        return model(x).float()


def _stream_logits(
    model: nn.Module, images: np.ndarray, idx: np.ndarray, batch_size: int, amp: str, cl: bool
) -> list[tuple[np.ndarray, Tensor]]:
    device = next(model.parameters()).device
    return [
        (b, _forward(model, _load_batch(images, b), device, amp, cl))
        for b in _chunks(idx, batch_size)
    ]


def _prob_of_positive(logits: Tensor) -> Tensor:
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


@torch.no_grad()
def predict_proba(
    model: nn.Module, images: np.ndarray, *, batch_size: int = 32, amp: str = "none"
) -> np.ndarray:
    """Probability of class 1 (TB/abnormal) per image, streamed batch by batch in eval mode."""
    _check_images(images)
    if batch_size < 1:
        raise CxrbsError(f"batch_size must be a positive integer, got {batch_size}")
    model.eval()
    idx = np.arange(images.shape[0])
    streamed = _stream_logits(model, images, idx, batch_size, amp, False)
    parts = [_prob_of_positive(z).cpu() for _, z in streamed]
    return torch.cat(parts).numpy().astype(np.float64)


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
    pre: dict[str, Any] = {"stack_size": int(stack_size), "input_size": int(input_size),
                           "low_pct": float(meta.get("low_pct", LOW_PCT)),
                           "high_pct": float(meta.get("high_pct", HIGH_PCT))}
    if meta.get("lung_crop"):  # trained on lung crops: a file without a mask takes the median box
        from cxrbs.cls.lung_crop import fallback_boxes

        pre["box"] = fallback_boxes(meta["lung_crop"], 1)[0]
    return pre


def fold_images(stack: np.ndarray, input_size: int | None,
                boxes: np.ndarray | None = None) -> np.ndarray:
    """A prepared uint16 (N,1,S,S) stack (or (N,S,S) floats in [0,1]) as the classifier sees it:
    float32 (N,s,s); with ``boxes`` (``cxrbs.cls.lung_crop.set_crop``: the whole set's boxes,
    indexed like the images) each image is first cut to its lung box. The one view for
    fine-tuning, the explain stage, the arm measures and ``cxrbs predict``."""
    if boxes is None:
        return resize_images(stack, input_size)
    from cxrbs.cls.lung_crop import crop_images

    return crop_images(stack, boxes, int(input_size or stack.shape[-1]))


def prepare_image(image: np.ndarray, *, stack_size: int, input_size: int | None,
                  low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT,
                  box: np.ndarray | None = None) -> np.ndarray:
    """One decoded image through the workflow's route (see module docstring): float32 (s,s);
    ``box`` (a checkpoint trained on lung crops) cuts it to that lung box first."""
    row = to_uint16(preprocess(image, stack_size, low_pct=low_pct, high_pct=high_pct))
    return fold_images(row[None, None], input_size, None if box is None else box[None])[0]


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
