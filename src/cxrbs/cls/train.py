"""Classifier training: the study's VGG-16 recipe, plus what training without ImageNet needs.

The study fine-tuned ImageNet VGG-16 with SGD. From random weights that recipe is weak and can
collapse to a constant prediction (STUDY.md), so this loop also offers AdamW, warm-up, cosine
decay, label smoothing and bf16, and refuses to hand back a collapsed model: a constant classifier
would otherwise flow silently into every metric and paired test downstream.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from cxrbs.cls.augment import augment_batch, epoch_generator, mix_batch, mix_rng
from cxrbs.cls.config import ClsTrainConfig
from cxrbs.cls.train_setup import (
    _build_model,
    _check_labels,
    _check_val_classes,
    _class_weights,
    imagenet_kwargs,
    _make_optimizer,
    _plain,
    _validation_mask,
)
from cxrbs.cls.predict import (
    _check_images,
    _forward,
    _load_batch,
    _prob_of_positive,
    _stream_logits,
    predict_proba,
)
from cxrbs.core.atomic import ensure_dir, write_csv, write_json
from cxrbs.cls.metrics import binary_metrics
from cxrbs.core.device import (
    autocast_context,
    configure_threads,
    environment_info,
    select_device,
)
from cxrbs.core.errors import CxrbsError
from cxrbs.models.checkpoint import (
    DEFAULT_CLASS_NAMES,
    LEGACY_WEIGHTS,
    header,
    load_checkpoint,
    save_checkpoint,
)
from cxrbs.training import loop
from cxrbs.training.ema import ema_of
from cxrbs.core.config import HIGH_PCT, LOW_PCT

__all__ = [  # ClsTrainConfig, augment_batch, predict_proba: re-exported from config/augment/predict
    "ClsTrainConfig",
    "augment_batch",
    "load_classifier",
    "predict_proba",
    "train_classifier",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cxrbs-classifier-1"
HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_auc", "val_acc", "lr", "seconds",
                   "images_per_s"]  # fmt: skip
#: Settings that may change between a killed run and its resumption (speed only).
_RESUME_FREE = ("threads", "device")
#: Probabilities spread less than this over the validation set count as one constant prediction.
_CONSTANT_STD = 1e-4
#: ... as does a one-class prediction whose AUC is this close to chance.
_CHANCE_AUC_BAND = 0.02
#: A validation AUC this high means the model ranks the classes: never a collapse, however
#: narrow its probabilities (a network a few steps from random weights predicts near-constants).
_HIGH_AUC = 0.75
#: Collapse is judged only from this epoch on, and never during warm-up: after one epoch from
#: random weights near-constant output is normal, not a collapse (issue 15's one-epoch smoke run).
_FIRST_JUDGED_EPOCH = 2



# --------------------------------------------------------------------------- checkpoints


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu", *, sha256: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, metadata without the weights); see models.checkpoint."""
    return load_checkpoint(path, "cls", sha256=sha256, device=device, purpose="`predict`")


def _judged(epoch: int, warmup_epochs: int) -> bool:
    """Whether training had a chance by the end of ``epoch``: past warm-up and the first epoch."""
    return epoch >= _FIRST_JUDGED_EPOCH and epoch > warmup_epochs


def _looks_constant(prob: np.ndarray, auc: float) -> bool:
    """Constant output, or one predicted class at chance AUC (how SGD from scratch collapses).

    A high AUC is never a collapse: the probabilities may be squeezed, but they rank.
    """
    if math.isfinite(auc) and auc >= _HIGH_AUC:
        return False
    if float(np.std(prob)) < _CONSTANT_STD:
        return True
    pred = prob > 0.5
    one_class = bool(pred.all() or not pred.any())
    return one_class and math.isfinite(auc) and abs(auc - 0.5) <= _CHANCE_AUC_BAND


# --------------------------------------------------------------------------- training task


class _Run:
    """One classifier run as a :class:`cxrbs.training.loop.Task`.

    The loop counts epochs from 1; the seeds of the batch order, the augmentations and the
    schedule use ``epoch - 1`` as they always have, so results did not change with the loop.
    """

    history_columns = HISTORY_COLUMNS

    def __init__(self, model: nn.Module, images: np.ndarray, y: np.ndarray, val: np.ndarray,
                 cfg: ClsTrainConfig, device: torch.device, stage: str | None,
                 meta: dict[str, Any], progress: bool) -> None:
        self.model, self.images, self.y, self.cfg, self.device = model, images, y, cfg, device
        self.meta, self.progress = meta, progress
        self.judge_collapse = bool(cfg.collapse_check)  # off for a one-class validation split
        self.epochs, self.patience = int(cfg.epochs), int(cfg.early_stopping_patience)
        self.train_idx, self.val_idx = np.flatnonzero(~val), np.flatnonzero(val)
        self.weights = _class_weights(y[self.train_idx], cfg.class_balanced).to(device)
        self.criterion = nn.CrossEntropyLoss(
            weight=self.weights, label_smoothing=cfg.label_smoothing
        )
        self.opt = _make_optimizer(model, cfg)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        self.ema = ema_of(model, cfg.ema_decay)
        self.step = 0
        self.stage_key = f"cls.{stage}" if stage else "cls.pretrain / cls.finetune"
        self._constant = False

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved: the weights' moving average when ``ema_decay`` > 0."""
        return self.model if self.ema is None else self.ema.module

    def _set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def _epoch_lr(self, e0: int) -> None:
        """Warm-up is set per step in train_epoch; cosine decays per epoch after it."""
        cfg = self.cfg
        if e0 < cfg.warmup_epochs or cfg.schedule != "cosine":
            if e0 == cfg.warmup_epochs and cfg.warmup_epochs > 0:
                self._set_lr(cfg.lr)
            return
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        floor = min(cfg.min_lr, cfg.lr)
        k = e0 - cfg.warmup_epochs
        self._set_lr(floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * k / span)))

    def epoch_context(self, epoch: int) -> AbstractContextManager[Any]:
        return nullcontext()  # one torch stream for the whole run, saved in last.pt

    def current_lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def _loss_error(self, epoch: int) -> Callable[[float], CxrbsError]:
        return lambda value: CxrbsError(
            f"training loss became {value} in epoch {epoch}: lower the learning rate "
            f"({self.stage_key}.lr), or set amp: none"
        )

    def train_epoch(self, epoch: int) -> loop.EpochResult:
        cfg, model, e0 = self.cfg, self.model, epoch - 1
        t0 = time.perf_counter()
        rng = loop.epoch_rng(cfg.seed, e0)
        batches = loop.epoch_batches(rng, self.train_idx, cfg.batch_size, cfg.steps_per_epoch,
                                     min_last=2)
        self._epoch_lr(e0)
        warm_steps = cfg.warmup_epochs * len(batches)
        gen = epoch_generator(cfg.seed, e0)
        mixer = mix_rng(cfg.seed, e0)
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not self.progress,
                   leave=False)
        error = self._loss_error(epoch)
        for b in bar:
            if self.step < warm_steps:
                self._set_lr(cfg.lr * (self.step + 1) / warm_steps)
            x = augment_batch(_load_batch(self.images, b).to(self.device), gen, **cfg.augment)
            x, partner, lam = mix_batch(x, mixer, mixup=cfg.mixup, cutmix=cfg.cutmix)
            logits = _forward(model, x, self.device, cfg.amp, cfg.channels_last)
            target = torch.as_tensor(self.y[b], device=self.device)
            loss = self.criterion(logits, target)
            if lam < 1.0:
                loss = lam * loss + (1 - lam) * self.criterion(logits, target[partner])
            value = float(loss.item())
            loop.optimise(loss, value, self.opt, self.scaler, error)
            if self.ema is not None:
                self.ema.update_parameters(model)
            self.step += 1
            total, seen = total + value * len(b), seen + len(b)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        return loop.EpochResult(total / max(seen, 1), seen, time.perf_counter() - t0)

    @torch.no_grad()
    def validate(self, epoch: int) -> loop.Validation:
        """Class-weighted validation loss (no smoothing), P(class 1) and the seven metrics."""
        model = self.eval_model
        model.eval()
        loss_sum, weight_sum, probs = 0.0, 0.0, []
        for b, logits in _stream_logits(model, self.images, self.val_idx, self.cfg.batch_size,
                                        self.cfg.amp, self.cfg.channels_last):
            t = torch.as_tensor(self.y[b], device=self.device)
            loss_sum += float(F.cross_entropy(logits, t, weight=self.weights, reduction="sum"))
            weight_sum += float(self.weights[t].sum())
            probs.append(_prob_of_positive(logits).cpu())
        loss = loss_sum / weight_sum
        if not math.isfinite(loss):
            raise CxrbsError(
                f"validation loss is {loss}: lower the learning rate ({self.stage_key}.lr), "
                "or set amp: none"
            )
        prob = torch.cat(probs).numpy().astype(np.float64)
        return loop.Validation(loss, (prob, binary_metrics(self.y[self.val_idx], prob)))

    def history_row(self, epoch: int, result: loop.EpochResult, val: loop.Validation,
                    lr_before: float, seconds: float) -> dict[str, Any]:
        metrics = val.info[1]
        return {
            "epoch": epoch, "loss": result.loss, "val_loss": val.loss, "val_auc": metrics["auc"],
            "val_acc": metrics["accuracy"], "lr": self.current_lr(), "seconds": seconds,
            "images_per_s": result.seen / max(result.seconds, 1e-9),
        }  # fmt: skip

    def check(self, epoch: int, val: loop.Validation, state: loop.LoopState) -> None:
        prob, metrics = val.info
        log.info("epoch %d: loss %.4f val_loss %.4f val_auc %.3f lr %.2e", epoch,
                 state.history[-1]["loss"], val.loss, metrics["auc"], self.current_lr())
        self._constant = self.judge_collapse and _looks_constant(prob, metrics["auc"])
        judged = _judged(epoch, self.cfg.warmup_epochs)
        streak = int(state.extra.get("constant_streak", 0))
        streak = streak + 1 if self._constant and judged else 0
        state.extra["constant_streak"] = streak
        if streak >= self.cfg.collapse_patience:
            raise self.collapse_error(metrics["auc"], streak)

    def on_improved(self, epoch: int, val: loop.Validation, state: loop.LoopState) -> None:
        state.extra["best"] = {"metrics": dict(val.info[1]), "constant": self._constant}

    def schedule(self, epoch: int, val_loss: float) -> None:
        if epoch - 1 >= self.cfg.warmup_epochs and self.cfg.schedule == "plateau":
            self.plateau.step(val_loss)

    def metadata(self, state: loop.LoopState) -> dict[str, Any]:
        return {**self.meta, "epoch": state.epoch, "best_epoch": state.best_epoch,
                "best_val_loss": state.best_val}

    def model_state(self) -> dict[str, Tensor]:
        return loop.cpu_state(self.eval_model.state_dict())

    def training_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ema = {} if self.ema is None else {
            "raw_model_state": loop.cpu_state(self.model.state_dict()),
            "ema_state": loop.cpu_state(self.ema.state_dict()),
        }
        return {
            **ema,
            "model_state": self.model_state(), "optimizer_state": self.opt.state_dict(),
            "scheduler_state": self.plateau.state_dict(), "scaler_state": self.scaler.state_dict(),
            "step": self.step, "torch_rng": rng,
        }  # fmt: skip

    def load_training_state(self, ckpt: Mapping[str, Any]) -> None:
        self.model.load_state_dict(ckpt.get("raw_model_state", ckpt["model_state"]))
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema_state"])
        self.opt.load_state_dict(ckpt["optimizer_state"])
        self.plateau.load_state_dict(ckpt["scheduler_state"])
        self.scaler.load_state_dict(ckpt["scaler_state"])
        self.step = int(ckpt["step"])
        torch.set_rng_state(ckpt["torch_rng"]["cpu"].cpu())
        if self.device.type == "cuda" and "cuda" in ckpt["torch_rng"]:
            torch.cuda.set_rng_state(ckpt["torch_rng"]["cuda"].cpu(), self.device)

    def log_epoch(self, epoch: int, row: Mapping[str, Any], improved: bool) -> None:
        return None  # logged in check(), before a collapse can stop the run

    def collapse_error(self, auc: float, n: int) -> CxrbsError:
        return CxrbsError(
            f"training collapsed to a constant prediction (val AUC {auc:.2f} for {n} epochs): "
            f"lower the learning rate ({self.stage_key}.lr), use optimizer adamw or a batch-norm "
            "model (resnet18, vgg16_bn, small_cnn)"
        )


def _fingerprint(images: np.ndarray, y: np.ndarray, ids: np.ndarray, val: np.ndarray,
                 extra_files: list[Path]) -> str:
    """Hash of what the run trains on: a last.pt of other data or another init is not resumed."""
    h = hashlib.sha256()
    for start in range(0, images.shape[0], 256):
        h.update(np.ascontiguousarray(images[start:start + 256]).tobytes())
    h.update(str(images.shape).encode() + str(images.dtype).encode())
    h.update(np.ascontiguousarray(y).tobytes() + np.ascontiguousarray(val).tobytes())
    h.update("\0".join(map(str, ids)).encode())
    for path in extra_files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _resume_key(meta: Mapping[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in dict(meta.get("config") or {}).items() if k not in _RESUME_FREE}
    keys = ("format", "model_name", "model_kwargs", "init", "data_sha256")
    return loop.plain({**{k: meta.get(k) for k in keys}, "config": config})


def _fit(run: _Run, outdir: Path) -> loop.LoopState:
    """Resume from last.pt when it is this run's, train, and refuse a collapsed best model."""
    state = loop.LoopState()
    if not loop.try_resume(outdir / "last.pt", run, state, _resume_key, log, run.device):
        loop.forget_stale_outputs(outdir, ("best.pt", "last.pt", "history.csv"), log)
    loop.run_epochs(run, state, outdir)
    best = state.extra["best"]
    if best["constant"]:  # the run ended before the streak limit, but its best model is constant
        if not _judged(state.epoch, run.cfg.warmup_epochs):
            log.warning("the best model predicts a near-constant probability (val AUC %.2f) "
                        "after only %d epoch(s): too short to judge a collapse, kept as it is",
                        best["metrics"]["auc"], state.epoch)
            return state
        raise run.collapse_error(best["metrics"]["auc"],
                                 max(int(state.extra.get("constant_streak", 0)), 1))
    return state


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """NaN (e.g. AUC of a one-class validation set) as null, so the JSON is standard."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()
    }


def train_classifier(
    model_name: str,
    model_kwargs: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    cfg: ClsTrainConfig,
    outdir: Path,
    *,
    init_checkpoint: Path | None = None,
    torchvision_weights: Path | None = None,
    val_mask: np.ndarray | None = None,
    progress: bool = True,
    stage: str | None = None,
    low_pct: float = LOW_PCT,
    high_pct: float = HIGH_PCT,
    stack_size: int | None = None,
    class_names: list[str] | None = None,
    lung_crop: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one classifier; writes split.csv, history.csv, model.pt, train_summary.json.

    model.pt (the lowest-validation-loss state) is written only when training ends without a
    collapse, so a downstream step never picks up a constant classifier. ``stage`` ("pretrain"
    or "finetune") only names the config key in error messages. ``low_pct``/``high_pct`` (the
    preprocessing percentiles) and ``stack_size`` (the side of the prepared stack before any
    resize to the input size) are recorded so that prediction preprocesses files the same way;
    so is ``lung_crop`` (``LungCrop.record()``) when the images were cut to their lung boxes.
    """
    configure_threads(cfg.threads)
    device = select_device(cfg.device)
    autocast_context(device, cfg.amp)  # refuses fp16 on a CPU before any output is written
    h, w = _check_images(images)
    y = _check_labels(labels, images.shape[0])
    ids = np.asarray(patient_ids)
    if ids.shape != y.shape:
        raise CxrbsError(f"patient ids must be one per image ({y.size}), got shape {ids.shape}")
    val = _validation_mask(ids, y, cfg, val_mask)
    one_class_val = _check_val_classes(y[val], stage, class_names)
    outdir = ensure_dir(outdir)
    split = pd.DataFrame({"index": np.arange(y.size), "patient_id": ids, "label": y,
                          "split": np.where(val, "val", "train")})
    write_csv(outdir / "split.csv", split)
    kwargs = _plain(dict(model_kwargs))
    if torchvision_weights is not None and init_checkpoint is None:
        kwargs = imagenet_kwargs(model_name, kwargs)
    t0 = time.perf_counter()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)  # dropout draws: same seed, same weights
        model, init, init_detail = _build_model(
            model_name, kwargs, cfg, init_checkpoint, torchvision_weights
        )
        for stale in ("model.pt", "train_summary.json"):  # never leave an older run's result
            (outdir / stale).unlink(missing_ok=True)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        init_files = [Path(p) for p in (init_checkpoint, torchvision_weights) if p is not None]
        meta = loop.plain({
            "format": CHECKPOINT_FORMAT, "model_name": model_name, "model_kwargs": kwargs,
            "config": asdict(cfg), "init": init,
            "data_sha256": _fingerprint(images, y, ids, val, init_files),
        })  # fmt: skip
        run = _Run(model, images, y, val, cfg, device, stage, meta, progress)
        run.judge_collapse = cfg.collapse_check and not one_class_val
        state = _fit(run, outdir)
    best = state.extra["best"]
    best_state = torch.load(outdir / "best.pt", map_location="cpu", weights_only=True)
    image_size: int | list[int] = h if h == w else [h, w]
    head = header(kind="cls", model_name=model_name, model_kwargs=kwargs, input_size=image_size,
                  seed=cfg.seed, versions=environment_info(device), low_pct=low_pct,
                  high_pct=high_pct, class_names=class_names or list(DEFAULT_CLASS_NAMES))
    weights = best_state["model_state"]
    save_checkpoint(outdir / "model.pt", {
        **head, "config": asdict(cfg), "init": init, "init_detail": init_detail,
        "best_epoch": state.best_epoch, "best_val_loss": state.best_val,
        "best_val_auc": best["metrics"]["auc"], "image_size": image_size,
        "stack_size": stack_size if stack_size is not None else image_size,
        "lung_crop": dict(lung_crop) if lung_crop is not None else None,
        LEGACY_WEIGHTS: weights,  # the same tensors (stored once): readers of the first format
    }, weights)  # fmt: skip
    summary = {
        "model_name": model_name, "model_kwargs": kwargs, "init": init, "init_detail": init_detail,
        "best_epoch": state.best_epoch, "best_val_loss": state.best_val,
        "best_val_auc": best["metrics"]["auc"], "val_metrics": _json_safe(best["metrics"]),
        "epochs_run": len(state.history), "stopped_early": len(state.history) < cfg.epochs,
        "n_train": int((~val).sum()), "n_val": int(val.sum()),
        "n_train_patients": int(np.unique(ids[~val]).size),
        "n_val_patients": int(np.unique(ids[val]).size),
        "image_size": image_size, "device": str(device), "amp": cfg.amp,
        "seconds": time.perf_counter() - t0, "model_path": str(outdir / "model.pt"),
        "lung_crop": dict(lung_crop) if lung_crop is not None else None,
        "settings": asdict(cfg),  # the recipe: tells a later estimate whether this job reruns
    }  # fmt: skip
    summary = _json_safe(summary)
    write_json(outdir / "train_summary.json", summary)
    return summary

