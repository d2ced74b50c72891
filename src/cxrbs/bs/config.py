"""Bone-suppression training settings (``bs.train``), checked before anything trains."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxrbs.bs.online_augment import OnlineAugment
from cxrbs.core.errors import CxrbsError
from cxrbs.core.schema_rules import rule_problem, schema_rule, section_defaults, section_rules

__all__ = ["OPTIMIZERS", "SELECT_ON", "TrainConfig"]

#: The schema's rules and defaults of ``bs.train``: the only place they are written. The online
#: augmentation's [low, high] pairs are checked by ``OnlineAugment``.
_RULES = {k: r for k, r in section_rules(schema_rule("bs.train")).items() if k != "online_augment"}
_D = section_defaults(schema_rule("bs.train"))
#: What a run adds to ``bs.train``: the config's seed, the job's threads, the evaluation batch.
_RUN_RULES = {"seed": schema_rule("seed"),
              "threads": {**schema_rule("resources.train_threads"), "type": ["integer", "null"]},
              "val_batch_size": schema_rule("bs.suppress_batch_size")}
OPTIMIZERS = tuple(_RULES["optimizer"]["enum"])
#: ``val_loss``: the training loss on validation crops (the study); ``psnr_gain``: the mean PSNR
#: gain over the identity baseline on whole validation images (what the bundled model is chosen on).
SELECT_ON = tuple(_RULES["select_on"]["enum"])


@dataclass
class TrainConfig:
    """Training settings; defaults are the study's (Adam 1e-3, batch 8, 200 epochs, patience 10)."""

    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    lr: float = _D["lr"]
    early_stopping_patience: int = _D["early_stopping_patience"]
    lr_factor: float = _D["lr_factor"]
    lr_patience: int = _D["lr_patience"]
    min_lr: float = _D["min_lr"]
    crop_size: int | None = _D["crop_size"]
    steps_per_epoch: int | None = _D["steps_per_epoch"]
    mae_weight: float = _D["mae_weight"]
    msssim_weight: float = _D["msssim_weight"]
    seed: int = 13
    amp: str = _D["amp"]
    channels_last: bool = _D["channels_last"]
    threads: int | None = None
    device: str = "auto"
    val_batch_size: int = 4
    # The recipe beyond the study (issue 20): what made the bundled model, now config keys.
    schedule: str = _D["schedule"]
    warmup_frac: float = _D["warmup_frac"]
    min_lr_frac: float = _D["min_lr_frac"]
    optimizer: str = _D["optimizer"]
    weight_decay: float = _D["weight_decay"]
    ema_decay: float = _D["ema_decay"]
    grad_clip: float | None = _D["grad_clip"]
    select_on: str = _D["select_on"]
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

    def validate(self) -> None:
        for key, rule in {**_RULES, **_RUN_RULES}.items():
            problem = rule_problem(getattr(self, key), rule)
            if problem:
                raise CxrbsError(f"training setting {key} {problem}, got {getattr(self, key)!r}")
        if not isinstance(self.online_augment, Mapping):
            raise CxrbsError("training setting online_augment must be a mapping, "
                             f"got {self.online_augment!r}")
        self.augment.validate()
