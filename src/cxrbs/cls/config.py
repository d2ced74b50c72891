"""Classifier training settings (``cls.pretrain`` / ``cls.finetune``), checked before anything
trains: an unknown key or a value out of range is one error naming the key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from cxrbs.core.device import AMP_MODES
from cxrbs.core.errors import CxrbsError

__all__ = ["ClsTrainConfig"]

_AUGMENT_DEFAULTS: dict[str, Any] = {"rotation": 5.0, "shift": 0.2, "hflip": True}
_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("plateau", "cosine"),
    "amp": AMP_MODES,
}
_POSITIVE_INTS = ("epochs", "batch_size", "early_stopping_patience", "collapse_patience")
_NONNEG_INTS = ("warmup_epochs", "lr_patience", "seed")
_OPTIONAL_POSITIVE_INTS = ("steps_per_epoch", "threads")
_BOOLS = ("nesterov", "class_balanced", "channels_last", "collapse_check")


def _bad(key: str, value: Any, rule: str) -> CxrbsError:
    return CxrbsError(f"classifier training setting {key}={value!r} is invalid: {rule}")


def _check_augment(aug: Any) -> dict[str, Any]:
    if not isinstance(aug, dict):
        raise _bad("augment", aug, "give a mapping with rotation, shift, hflip")
    unknown = sorted(set(aug) - set(_AUGMENT_DEFAULTS))
    if unknown:
        raise CxrbsError(
            f"unknown classifier augmentation setting(s) augment.{', augment.'.join(unknown)}: "
            f"use {', '.join(_AUGMENT_DEFAULTS)}"
        )
    out = {**_AUGMENT_DEFAULTS, **aug}
    if not isinstance(out["hflip"], bool):
        raise _bad("augment.hflip", out["hflip"], "must be true or false")
    for key, hi in (("rotation", 45.0), ("shift", 0.5)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
            raise _bad(f"augment.{key}", v, f"must be a number in [0, {hi:g}]")
        out[key] = float(v)
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass
class ClsTrainConfig:
    """One classifier training stage (``cls.pretrain`` or ``cls.finetune``); defaults = study."""

    epochs: int = 32
    batch_size: int = 16
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-6
    schedule: str = "plateau"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    #: Beta(a, a) concentrations of mixup / CutMix (0 = off); both on: one of them per batch.
    mixup: float = 0.0
    cutmix: float = 0.0
    #: Decay of the weights' moving average that is validated and saved (0 = off).
    ema_decay: float = 0.0
    early_stopping_patience: int = 5
    lr_factor: float = 0.5
    lr_patience: int = 5
    min_lr: float = 1e-5
    class_balanced: bool = True
    val_fraction: float = 0.1
    amp: str = "none"
    channels_last: bool = False
    steps_per_epoch: int | None = None
    collapse_patience: int = 3
    #: False only for smoke runs of a few steps (config/paper_smoke.yaml): a randomly initialised
    #: VGG-16 is still near-constant then, and the run checks that the path works, not the model.
    collapse_check: bool = True
    augment: dict[str, Any] = field(default_factory=lambda: dict(_AUGMENT_DEFAULTS))
    seed: int = 13
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        self.augment = _check_augment(self.augment)
        for key, options in _CHOICES.items():
            if getattr(self, key) not in options:
                raise _bad(key, getattr(self, key), f"use one of {', '.join(options)}")
        for key in _POSITIVE_INTS + _NONNEG_INTS + _OPTIONAL_POSITIVE_INTS:
            v = getattr(self, key)
            if v is None and key in _OPTIONAL_POSITIVE_INTS:
                continue
            low = 0 if key in _NONNEG_INTS else 1
            if not _is_int(v) or v < low:
                raise _bad(key, v, f"must be an integer >= {low}")
        for key in _BOOLS:
            if not isinstance(getattr(self, key), bool):
                raise _bad(key, getattr(self, key), "must be true or false")
        self._check_ranges()

    def _check_ranges(self) -> None:
        rules = {  # key: (low, high, low inclusive, high inclusive)
            "lr": (0.0, math.inf, False, False),
            "momentum": (0.0, 1.0, True, True),
            "weight_decay": (0.0, math.inf, True, False),
            "label_smoothing": (0.0, 0.5, True, True),
            "mixup": (0.0, 4.0, True, True),
            "cutmix": (0.0, 4.0, True, True),
            "ema_decay": (0.0, 1.0, True, False),
            "lr_factor": (0.0, 1.0, False, False),
            "min_lr": (0.0, math.inf, True, False),
            "val_fraction": (0.0, 0.5, False, False),  # = schema cls_train.val_fraction
        }
        for key, (lo, hi, lo_in, hi_in) in rules.items():
            v = getattr(self, key)
            ok = _is_num(v) and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
            if not ok:
                interval = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
                raise _bad(key, v, f"must be a number in {interval}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, **overrides: Any) -> ClsTrainConfig:
        """Build from a config section; an unknown key is an error, never silently ignored."""
        merged = {**(d or {}), **overrides}
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(merged) - set(known))
        if unknown:
            raise CxrbsError(
                f"unknown classifier training setting(s) {', '.join(unknown)}: "
                f"known settings are {', '.join(known)}"
            )
        return cls(**merged)
