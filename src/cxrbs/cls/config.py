"""Classifier training settings (``cls.pretrain`` / ``cls.finetune``), checked before anything
trains: an unknown key or a value out of range is one error naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from cxrbs.core.errors import CxrbsError
from cxrbs.core.schema_rules import rule_problem, schema_rule, section_defaults, section_rules

__all__ = ["ClsTrainConfig"]

#: The schema's rules and defaults (``$defs.cls_train``, shared by cls.pretrain and cls.finetune):
#: the only place they are written.
_RULES = {k: r for k, r in section_rules(schema_rule("cls.pretrain")).items() if k != "augment"}
_D = section_defaults(schema_rule("cls.pretrain"))
_AUGMENT_RULES = section_rules(schema_rule("cls.pretrain.augment"))
_AUGMENT_DEFAULTS: dict[str, Any] = section_defaults(schema_rule("cls.pretrain.augment"))
#: What a run adds to its config section: the config's seed and the job's thread count.
_RUN_RULES = {"seed": schema_rule("seed"),
              "threads": {**schema_rule("resources.train_threads"), "type": ["integer", "null"]}}


def _bad(key: str, value: Any, rule: str) -> CxrbsError:
    return CxrbsError(f"classifier training setting {key}={value!r} is invalid: {rule}")


def _check_augment(aug: Any) -> dict[str, Any]:
    if not isinstance(aug, dict):
        raise _bad("augment", aug, "give a mapping with rotation, shift, hflip")
    unknown = sorted(set(aug) - set(_AUGMENT_RULES))
    if unknown:
        raise CxrbsError(
            f"unknown classifier augmentation setting(s) augment.{', augment.'.join(unknown)}: "
            f"use {', '.join(_AUGMENT_RULES)}"
        )
    out = {**_AUGMENT_DEFAULTS, **aug}
    for key, rule in _AUGMENT_RULES.items():
        problem = rule_problem(out[key], rule)
        if problem:
            raise _bad(f"augment.{key}", out[key], problem)
        if "number" in (rule.get("type") or ()):
            out[key] = float(out[key])
    return out


@dataclass
class ClsTrainConfig:
    """One classifier training stage (``cls.pretrain`` or ``cls.finetune``); defaults = study."""

    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    optimizer: str = _D["optimizer"]
    lr: float = _D["lr"]
    momentum: float = _D["momentum"]
    nesterov: bool = _D["nesterov"]
    weight_decay: float = _D["weight_decay"]
    schedule: str = _D["schedule"]
    warmup_epochs: int = _D["warmup_epochs"]
    label_smoothing: float = _D["label_smoothing"]
    #: Beta(a, a) concentrations of mixup / CutMix (0 = off); both on: one of them per batch.
    mixup: float = _D["mixup"]
    cutmix: float = _D["cutmix"]
    #: Decay of the weights' moving average that is validated and saved (0 = off).
    ema_decay: float = _D["ema_decay"]
    early_stopping_patience: int = _D["early_stopping_patience"]
    lr_factor: float = _D["lr_factor"]
    lr_patience: int = _D["lr_patience"]
    min_lr: float = _D["min_lr"]
    class_balanced: bool = _D["class_balanced"]
    val_fraction: float = _D["val_fraction"]
    amp: str = _D["amp"]
    channels_last: bool = _D["channels_last"]
    steps_per_epoch: int | None = _D["steps_per_epoch"]
    collapse_patience: int = _D["collapse_patience"]
    #: False only for smoke runs of a few steps (config/paper_smoke.yaml): a randomly initialised
    #: VGG-16 is still near-constant then, and the run checks that the path works, not the model.
    collapse_check: bool = _D["collapse_check"]
    augment: dict[str, Any] = field(default_factory=lambda: dict(_AUGMENT_DEFAULTS))
    seed: int = 13
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        self.augment = _check_augment(self.augment)
        for key, rule in {**_RULES, **_RUN_RULES}.items():
            problem = rule_problem(getattr(self, key), rule)
            if problem:
                raise _bad(key, getattr(self, key), problem)

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
