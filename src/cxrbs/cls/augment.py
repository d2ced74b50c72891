"""Classifier augmentation: seeded random rotation, shift and flip, one affine warp per batch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "epoch_generator"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator of one epoch's augmentations: reruns and resumed epochs draw the same."""
    state = np.random.SeedSequence([int(seed), int(epoch), 1]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def augment_batch(
    x: Tensor,
    generator: torch.Generator,
    *,
    rotation: float = 5.0,
    shift: float = 0.2,
    hflip: bool = True,
) -> Tensor:
    """Random rotation (±degrees), shift (±fraction of the side) and horizontal flip per image.

    One affine_grid/grid_sample call per batch keeps it cheap on the CPU. Parameters are drawn on
    the CPU generator whatever ``x``'s device, so a seed gives the same images on CPU and GPU.
    Borders repeat the edge pixels, like Keras' default fill_mode "nearest" in the study.
    """
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)  # drawn even if unused
    if rotation == 0 and shift == 0 and not hflip:
        return x
    angle = torch.deg2rad((2 * u[:, 0] - 1) * rotation)
    tx, ty = (2 * u[:, 1] - 1) * 2 * shift, (2 * u[:, 2] - 1) * 2 * shift  # [-1,1] spans 2
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if hflip else torch.ones(n, dtype=u.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Rotation in pixel space, written in normalised coordinates (hence the aspect factors).
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin * (h / w), tx], dim=1),
            torch.stack([sin * (w / h) * flip, cos, ty], dim=1),
        ],
        dim=1,
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
