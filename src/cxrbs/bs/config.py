"""Bone-suppression training settings (``bs.train``), checked before anything trains."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxrbs.bs.online_augment import OnlineAugment
from cxrbs.core.device import AMP_MODES
from cxrbs.core.errors import CxrbsError
from cxrbs.training.schedule import SCHEDULES

__all__ = ["OPTIMIZERS", "SELECT_ON", "TrainConfig"]

OPTIMIZERS = ("adam", "adamw")
#: ``val_loss``: the training loss on validation crops (the study); ``psnr_gain``: the mean PSNR
#: gain over the identity baseline on whole validation images (what the bundled model is chosen on).
SELECT_ON = ("val_loss", "psnr_gain")


@dataclass
class TrainConfig:
    """Training settings; defaults are the study's (Adam 1e-3, batch 8, 200 epochs, patience 10)."""

    epochs: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    early_stopping_patience: int = 10
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_lr: float = 1e-5
    crop_size: int | None = None
    steps_per_epoch: int | None = None
    mae_weight: float = 0.16
    msssim_weight: float = 0.84
    seed: int = 13
    amp: str = "none"
    channels_last: bool = False
    threads: int | None = None
    device: str = "auto"
    val_batch_size: int = 4
    # The recipe beyond the study (issue 20): what made the bundled model, now config keys.
    schedule: str = "plateau"
    warmup_frac: float = 0.0
    min_lr_frac: float = 0.02
    optimizer: str = "adam"
    weight_decay: float = 0.0
    ema_decay: float = 0.0
    grad_clip: float | None = None
    select_on: str = "val_loss"
    online_augment: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def augment(self) -> OnlineAugment:
        return OnlineAugment.from_mapping(self.online_augment)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a config section, naming unknown keys instead of ignoring them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CxrbsError(
                f"unknown training setting(s) {', '.join(unknown)}: "
                f"valid keys are {', '.join(sorted(known))}"
            )
        cfg = cls(**dict(values))
        cfg.validate()
        return cfg

    def _check_types(self) -> None:
        """YAML and the CLI hand over strings and floats; name the key before anything trains."""
        ints = ("epochs", "batch_size", "val_batch_size", "early_stopping_patience", "lr_patience",
                "seed")
        optional_ints = ("crop_size", "steps_per_epoch", "threads")
        floats = ("lr", "lr_factor", "min_lr", "mae_weight", "msssim_weight", "warmup_frac",
                  "min_lr_frac", "weight_decay", "ema_decay")
        for key in ints + optional_ints:
            value = getattr(self, key)
            if value is None and key in optional_ints:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise CxrbsError(f"training setting {key} must be an integer, got {value!r}")
        for key in floats:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CxrbsError(f"training setting {key} must be a number, got {value!r}")
        if not isinstance(self.channels_last, bool):
            raise CxrbsError(f"training setting channels_last must be true or false, "
                             f"got {self.channels_last!r}")

    def validate(self) -> None:
        self._check_types()
        positive = ("epochs", "batch_size", "val_batch_size", "early_stopping_patience")
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise CxrbsError(f"training setting {key} must be >= 1, got {getattr(self, key)}")
        if self.lr_patience < 0:
            raise CxrbsError(f"training setting lr_patience must be >= 0, got {self.lr_patience}")
        for key in ("lr", "lr_factor"):
            if not float(getattr(self, key)) > 0:
                raise CxrbsError(f"training setting {key} must be > 0, got {getattr(self, key)}")
        if not 0 < self.lr_factor < 1:
            raise CxrbsError(f"training setting lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.crop_size is not None and int(self.crop_size) < 16:  # = schema bs.train.crop_size
            raise CxrbsError(
                f"training setting crop_size must be >= 16 or null, got {self.crop_size}"
            )
        for key in ("min_lr", "mae_weight", "msssim_weight"):  # schema: minimum 0
            if not float(getattr(self, key)) >= 0:
                raise CxrbsError(f"training setting {key} must be >= 0, got {getattr(self, key)}")
        if self.steps_per_epoch is not None and int(self.steps_per_epoch) < 1:
            raise CxrbsError(
                f"training setting steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch}"
            )
        choices = {"schedule": SCHEDULES, "optimizer": OPTIMIZERS, "select_on": SELECT_ON}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise CxrbsError(f"training setting {key} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, key)!r}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise CxrbsError(f"training setting warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if not 0.0 <= self.min_lr_frac <= 1.0:
            raise CxrbsError(f"training setting min_lr_frac must be in [0, 1], got {self.min_lr_frac}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise CxrbsError(f"training setting ema_decay must be in [0, 1) (0: off), "
                             f"got {self.ema_decay}")
        if self.weight_decay < 0:
            raise CxrbsError(f"training setting weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and (isinstance(self.grad_clip, bool)
                                           or not float(self.grad_clip) > 0):
            raise CxrbsError(f"training setting grad_clip must be > 0 or null, got {self.grad_clip}")
        if not isinstance(self.online_augment, Mapping):
            raise CxrbsError("training setting online_augment must be a mapping, "
                             f"got {self.online_augment!r}")
        self.augment.validate()
        if self.amp not in AMP_MODES:
            raise CxrbsError(
                f"training setting amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"
            )
