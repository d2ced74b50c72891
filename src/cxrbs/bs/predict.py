"""Applying a bone-suppression model to an image stack, batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrbs.data.preprocess import as_float01
from cxrbs.core.device import autocast_context, select_device
from cxrbs.core.errors import CxrbsError

__all__ = ["is_channels_last", "load_bs_model", "predict_images"]


def predict_images(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 4,
    amp: str = "none",
    channels_last: bool = False,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Bone-suppressed (N,H,W) float32 images in [0, 1] from (N,H,W) radiographs, batch by batch.

    ``device=None`` keeps the model where it is; otherwise the model is moved there (and to
    channels-last memory when asked), which changes the model object in place.
    """
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 3:
        raise CxrbsError(f"predict_images takes an (N,H,W) image stack, got shape {shape}")
    if int(batch_size) < 1:
        raise CxrbsError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        model.to(select_device(str(device)))
    dev = next(model.parameters()).device
    if channels_last and not is_channels_last(model):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    out = np.empty(shape, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, shape[0], int(batch_size)):
                x = torch.from_numpy(as_float01(images[start : start + int(batch_size)]))[:, None]
                x = x.to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(dev, amp):
                    y = model(x)
                out[start : start + x.shape[0]] = y.float().clamp(0.0, 1.0)[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return out


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D weights are already channels-last (converting once up front lets
    several threads share the model without one of them rewriting its weights mid-forward)."""
    for param in model.parameters():
        if param.dim() == 4:
            return bool(param.is_contiguous(memory_format=torch.channels_last))
    return True


def load_bs_model(
    path: str | Path, device: str | torch.device = "cpu", *, sha256: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A bone-suppression model (eval mode) and its metadata; see cxrbs.models.checkpoint.

    It lives here, not beside the training loop, so that inference never imports training code.
    """
    from cxrbs.models.checkpoint import load_checkpoint

    return load_checkpoint(path, "bs", sha256=sha256, device=select_device(str(device)),
                           purpose="`suppress`")
