"""VGG-16 truncated after conv5_3, with torchvision's parameter names (torchvision not needed).

Keeping ``features.<i>.*`` names identical to torchvision's means its ImageNet state-dict file
loads by key; the layer indices are those of torchvision's ``features`` Sequential, cut before the
last max-pool (``features[:30]``, or ``features[:43]`` with batch norm) as the study truncated at
block5_conv3.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import ClassifierModel
from cxrbs.models.registry import register

# torchvision's VGG-16 configuration ("D") without its final max-pool.
_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


def _features(batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(c_in, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        c_in = v
    return nn.Sequential(*layers)


class VGG16(ClassifierModel):
    """VGG-16 features up to conv5_3 + ReLU, global average pooling, dropout, ``fc``."""

    def __init__(
        self, *, batch_norm: bool = False, num_classes: int = 2, dropout: float = 0.5,
        imagenet_norm: bool = False, tta_hflip: bool = False,
    ) -> None:
        super().__init__(num_features=512, num_classes=num_classes, dropout=dropout,
                         tta_hflip=tta_hflip)
        self.features = _features(bool(batch_norm))
        self._init_weights()
        if imagenet_norm:
            self.use_imagenet_norm()


@register("vgg16", kind="cls")
def vgg16(*, num_classes: int = 2, dropout: float = 0.5, imagenet_norm: bool = False,
          tta_hflip: bool = False) -> VGG16:
    """The study's classifier; ``imagenet_norm`` is set when ImageNet weights are loaded."""
    return VGG16(batch_norm=False, num_classes=num_classes, dropout=dropout,
                 imagenet_norm=imagenet_norm, tta_hflip=tta_hflip)


@register("vgg16_bn", kind="cls")
def vgg16_bn(*, num_classes: int = 2, dropout: float = 0.5, imagenet_norm: bool = False,
             tta_hflip: bool = False) -> VGG16:
    """VGG-16 with batch norm after every conv (torchvision's vgg16_bn layout)."""
    return VGG16(batch_norm=True, num_classes=num_classes, dropout=dropout,
                 imagenet_norm=imagenet_norm, tta_hflip=tta_hflip)


def _read_state_dict(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise CxrbsError(
            f"VGG-16 weights file {path} does not exist: download torchvision's "
            "vgg16-397923af.pth there, or drop the weights path to train from random weights"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CxrbsError(
            f"cannot read {path} as a torch state dict ({exc}): re-download the file"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CxrbsError(f"{path} holds a {type(obj).__name__}, not a torchvision state dict")
    return obj


def load_torchvision_weights(
    model: nn.Module, path: str | os.PathLike[str], *, strict: bool = False
) -> dict[str, Any]:
    """Copy the ``features.*`` tensors of a torchvision VGG-16 state-dict file into ``model``.

    ``classifier.*`` and anything beyond the truncation are ignored (``fc`` stays freshly
    initialised). Returns {"loaded": n, "skipped": file keys not used, "missing": model
    ``features.*`` entries the file did not fill}. ``strict=True`` turns any missing entry or shape
    mismatch into an error, e.g. a vgg16_bn file given to vgg16.
    """
    path = Path(path)
    source = _read_state_dict(path)
    target = model.state_dict()
    take: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    mismatched: list[str] = []
    for key, value in source.items():
        ok = (
            isinstance(key, str)
            and key.startswith("features.")
            and key in target
            and isinstance(value, torch.Tensor)
        )
        if ok and value.shape == target[key].shape:
            take[key] = value
        else:
            skipped.append(str(key))
            if ok:
                mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}")
    # num_batches_tracked only counts BN updates; older torchvision files do not carry it.
    missing = sorted(
        k
        for k in target
        if k.startswith("features.") and k not in take and not k.endswith("num_batches_tracked")
    )
    if not take:
        raise CxrbsError(
            f"{path} has no features.* tensor matching this model: "
            "is it a torchvision vgg16 (or vgg16_bn) state dict for the chosen model?"
        )
    if strict and (missing or mismatched):
        raise CxrbsError(
            f"{path} does not fit {type(model).__name__}: missing {missing[:5]}, "
            f"shape mismatch {mismatched[:5]}: "
            "use vgg16-*.pth for vgg16 and vgg16_bn-*.pth for vgg16_bn"
        )
    model.load_state_dict(take, strict=False)
    return {"loaded": len(take), "skipped": skipped, "missing": missing}
