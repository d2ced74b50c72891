"""Classifier augmentation: seeded random rotation, shift and flip, one affine warp per batch;
and mixup / CutMix, which mix pairs of images and their labels (regularisers that help small
from-scratch training sets, issue 14)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "epoch_generator", "mix_batch", "mix_rng"]


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


def mix_rng(seed: int, epoch: int) -> np.random.Generator:
    """Generator of one epoch's mixing draws, apart from the batch order and the warps."""
    return np.random.default_rng([int(seed), int(epoch), 2])


def mix_batch(x: Tensor, rng: np.random.Generator, *, mixup: float = 0.0,
              cutmix: float = 0.0) -> tuple[Tensor, Tensor, float]:
    """Mix each image with another of the batch: (images, partner order, weight of the own label).

    mixup blends whole images with weight ``lam ~ Beta(mixup, mixup)``; CutMix pastes a box of the
    partner covering ``1 - lam`` of the area (``lam ~ Beta(cutmix, cutmix)``, corrected to the box
    actually pasted). With both on, each batch takes one of the two at random. The loss is then
    ``lam * loss(own label) + (1 - lam) * loss(partner's label)``.
    """
    n, _, h, w = x.shape
    identity = torch.arange(n, device=x.device)
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    if alpha <= 0 or n < 2:
        return x, identity, 1.0
    lam = float(rng.beta(alpha, alpha))
    perm = torch.as_tensor(rng.permutation(n), device=x.device)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[perm], perm, lam
    cut_h, cut_w = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return out, perm, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
