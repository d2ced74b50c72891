"""Bone-suppression training settings (``bs.train``), checked before anything trains."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxrbs.core.device import AMP_MODES
from cxrbs.core.errors import CxrbsError

__all__ = ["TrainConfig"]


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
        floats = ("lr", "lr_factor", "min_lr", "mae_weight", "msssim_weight")
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
        if self.amp not in AMP_MODES:
            raise CxrbsError(
                f"training setting amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"
            )
