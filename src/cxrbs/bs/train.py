"""One training loop for every bone-suppression model, resumable after a kill with equal results.

Reproducibility rests on three choices: the model is built from ``cfg.seed``; every epoch draws its
shuffle and crops from a numpy Generator seeded by ``(cfg.seed, epoch)`` (so epoch k is the same
whether or not epochs 1..k-1 ran in this process); and ``last.pt`` holds everything that carries
over between epochs (weights, Adam moments, scheduler and early-stopping counters, history).
On the CPU two runs with the same seed give bitwise-identical weights; on a GPU, cuDNN may pick
non-deterministic kernels, so results agree only to rounding.

Validation uses whole images when ``crop_size`` is None, else centre crops of
``min(2 * crop_size, H, W)``: more context than the training crops (less border effect) at a
bounded cost, since a 256 px ResNet-BS forward pass takes about a second on a CPU.

Beyond the study's recipe (Adam, ReduceLROnPlateau, selection on validation loss) the same loop
runs the recipe of the bundled model (issue 20), all as ``bs.train`` keys: warm-up + cosine over
the step budget, AdamW, an EMA of the weights (validated and saved instead of the raw weights),
gradient clipping, online pair-consistent augmentation (:mod:`cxrbs.bs.online_augment`) and
selection on the validation PSNR gain over the identity baseline, the number a user cares about.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from cxrbs.core import atomic, names
from cxrbs.core.device import (
    autocast_context,
    configure_threads,
    environment_info,
    select_device,
)
from cxrbs.core.errors import CxrbsError
from cxrbs.bs.losses import CombinedLoss, msssim_settings
from cxrbs.bs.metrics import check_pair_stack
from cxrbs.data.preprocess import as_float01
from cxrbs.models.checkpoint import header
from cxrbs.bs.config import TrainConfig
from cxrbs.bs.online_augment import OnlineAugment, augment_crop, draw_crop
from cxrbs.training import loop
from cxrbs.training.ema import ema_of
from cxrbs.training.schedule import warmup_cosine
from cxrbs.core.config import HIGH_PCT, LOW_PCT

__all__ = ["HISTORY_COLUMNS", "TrainConfig", "train_bs", "val_side"]

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "val_psnr_gain", "lr", "seconds", "images_per_s"]
# Config fields that may differ between a killed run and its resumption: they do not change what
# an epoch computes (more epochs extend the same run; threads/device only change speed).
_RESUME_FREE = ("epochs", "threads", "device")
_OUTPUTS = ("best.pt", "last.pt", "history.csv", "train_summary.json")


@dataclass
class _Run:
    """Everything one training run carries from epoch to epoch (the loop's state is separate)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    scaler: torch.amp.GradScaler
    criterion: CombinedLoss
    device: torch.device
    cfg: TrainConfig
    train_pairs: np.ndarray
    val_pairs: np.ndarray
    progress: bool
    low_pct: float = LOW_PCT
    high_pct: float = HIGH_PCT
    ema: Any = None  # torch AveragedModel when ema_decay > 0
    step: int = 0  # optimiser steps so far (the cosine schedule's clock)
    augment: OnlineAugment = dataclasses.field(default_factory=OnlineAugment)

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved: the weights' moving average when ``ema_decay`` > 0."""
        return self.model if self.ema is None else self.ema.module

    def steps_per_epoch(self) -> int:
        if self.cfg.steps_per_epoch is not None:
            return int(self.cfg.steps_per_epoch)
        return -(-int(self.train_pairs.shape[0]) // int(self.cfg.batch_size))

    def step_budget(self) -> int:
        """Optimiser steps of the whole run: the horizon of the cosine schedule."""
        return int(self.cfg.epochs) * self.steps_per_epoch()

    def set_step_lr(self) -> None:
        """cosine: the learning rate of the coming step, a function of the step count only."""
        cfg = self.cfg
        if cfg.schedule != "cosine":
            return
        lr = cfg.lr * warmup_cosine(self.step / self.step_budget(), warmup_frac=cfg.warmup_frac,
                                    min_lr_frac=cfg.min_lr_frac)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


_plain = loop.plain


def val_side(cfg: TrainConfig, height: int, width: int) -> int | None:
    """Side of the validation centre crops, or None for whole images (see module docstring)."""
    if cfg.crop_size is None:
        return None
    return min(2 * int(cfg.crop_size), height, width)


def _load_batch(
    pairs: np.ndarray, idx: np.ndarray, crop: int | None, rng: np.random.Generator,
    augment: OnlineAugment | None = None,
) -> Tensor:
    """(B,2,c,c) float32 tensor; the same random crop window (and, with ``augment``, the same
    random changes) for source and target."""
    if augment is not None and augment.active:
        return torch.from_numpy(np.stack([
            augment_crop(draw_crop(as_float01(pairs[i]), crop, augment, rng), augment, rng)
            for i in idx]))
    if crop is None:
        return torch.from_numpy(as_float01(pairs[idx]))
    _, _, h, w = pairs.shape
    ys = rng.integers(0, h - crop + 1, size=len(idx))
    xs = rng.integers(0, w - crop + 1, size=len(idx))
    parts = [pairs[i, :, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)]
    return torch.from_numpy(as_float01(np.stack(parts)))


def _centre_crop(pairs: np.ndarray, start: int, stop: int, side: int | None) -> Tensor:
    if side is None:
        return torch.from_numpy(as_float01(pairs[start:stop]))
    _, _, h, w = pairs.shape
    y0, x0 = (h - side) // 2, (w - side) // 2
    return torch.from_numpy(as_float01(pairs[start:stop, :, y0 : y0 + side, x0 : x0 + side]))


def _to_device(batch: Tensor, run: _Run) -> tuple[Tensor, Tensor]:
    batch = batch.to(run.device, non_blocking=True)
    x, y = batch[:, :1], batch[:, 1:]
    if run.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _penalty(model: nn.Module) -> Tensor | float:
    fn = getattr(model, "penalty", None)
    return fn() if callable(fn) else 0.0


def _loss(run: _Run, x: Tensor, y: Tensor, model: nn.Module | None = None) -> Tensor:
    return _loss_and_pred(run, x, y, model)[0]


def _loss_and_pred(run: _Run, x: Tensor, y: Tensor,
                   model: nn.Module | None = None) -> tuple[Tensor, Tensor]:
    net = run.model if model is None else model
    with autocast_context(run.device, run.cfg.amp):
        pred = net(x)
    return run.criterion(pred, y) + _penalty(net), pred


def _non_finite(what: str, epoch: int, step: int | None, run: _Run) -> CxrbsError:
    where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
    return CxrbsError(
        f"{what} became non-finite at {where}: lower the learning rate (lr is "
        f"{run.optimizer.param_groups[0]['lr']:g}) or set amp: none (amp is {run.cfg.amp!r})"
    )


def _train_epoch(run: _Run, epoch: int) -> tuple[float, int, float]:
    """One epoch of optimisation: (mean training loss per image, images seen, seconds)."""
    cfg = run.cfg
    rng = loop.epoch_rng(cfg.seed, epoch)
    n = run.train_pairs.shape[0]
    batches = loop.epoch_batches(rng, np.arange(n), int(cfg.batch_size), cfg.steps_per_epoch)
    run.model.train()
    total, seen = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not run.progress)
    for step, idx in enumerate(bar, start=1):
        x, y = _to_device(_load_batch(run.train_pairs, idx, cfg.crop_size, rng, run.augment), run)
        run.set_step_lr()
        loss = _loss(run, x, y)
        value = float(loss.detach())
        loop.optimise(loss, value, run.optimizer, run.scaler,
                      lambda v: _non_finite("training loss", epoch, step, run),  # noqa: B023
                      grad_clip=cfg.grad_clip)
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        run.step += 1
        total += value * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
    bar.close()
    return total / seen, seen, time.perf_counter() - t0


def _psnr_db(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR (data range 1, capped like :func:`cxrbs.bs.metrics.psnr`) of (B,1,H,W)."""
    from cxrbs.bs.metrics import PSNR_CAP_DB

    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-30))).clamp(max=PSNR_CAP_DB)


def _validate(run: _Run, epoch: int) -> tuple[float, float]:
    """Mean loss per validation image, same loss as training (penalty included, like Keras),
    and the mean PSNR gain over identity of the prediction (clipped to [0, 1], as deployed)."""
    pairs, bs = run.val_pairs, int(run.cfg.val_batch_size)
    side = val_side(run.cfg, pairs.shape[2], pairs.shape[3])
    model = run.eval_model
    was_training = model.training
    model.eval()
    total, gain = 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, pairs.shape[0], bs):
            x, y = _to_device(_centre_crop(pairs, start, start + bs, side), run)
            loss, pred = _loss_and_pred(run, x, y, model)
            total += float(loss) * x.shape[0]
            gain += float((_psnr_db(pred.clamp(0.0, 1.0), y) - _psnr_db(x, y)).sum())
    model.train(was_training)
    value, gain = total / pairs.shape[0], gain / pairs.shape[0]
    if not (math.isfinite(value) and math.isfinite(gain)):
        raise _non_finite("validation loss", epoch, None, run)
    return value, gain


def _msssim_meta(side: int) -> dict[str, Any]:
    win, weights = msssim_settings(side)
    return {"side": int(side), "win_size": int(win), "weights": [float(w) for w in weights]}


def _metadata(model_name: str, model_kwargs: dict[str, Any], run: _Run, state: loop.LoopState,
              versions: dict[str, Any]) -> dict[str, Any]:
    cfg = run.cfg
    _, _, h, w = run.train_pairs.shape
    _, _, vh, vw = run.val_pairs.shape
    train_side = int(cfg.crop_size) if cfg.crop_size is not None else min(h, w)
    vside = val_side(cfg, vh, vw)
    head = header(kind="bs", model_name=model_name, model_kwargs=_plain(model_kwargs),
                  input_size=int(vh) if vh == vw else [int(vh), int(vw)], seed=int(cfg.seed),
                  versions=versions, low_pct=run.low_pct, high_pct=run.high_pct,
                  output_mode=str(getattr(run.model, "output", None)
                                      or dict(model_kwargs).get("output", "direct")))
    return {
        **head,
        "config": _plain(dataclasses.asdict(cfg)),
        "device": str(run.device),
        "epoch": int(state.epoch),
        "best_epoch": int(state.best_epoch),
        "best_val_loss": float(state.best_val),
        "crop_size": cfg.crop_size,
        "val_side": vside,
        "msssim": {
            "train": _msssim_meta(train_side),
            "val": {**_msssim_meta(train_side), "side": vside if vside is not None else min(vh, vw)}
            if cfg.crop_size is not None else _msssim_meta(min(vh, vw)),
        },
        "data": {
            "train_shape": [int(s) for s in run.train_pairs.shape],
            "val_shape": [int(s) for s in run.val_pairs.shape],
        },
    }


def _resume_key(meta: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(meta.get("config", {}))
    # The cosine schedule spans epochs x steps: more epochs would be another run's schedule.
    free = _RESUME_FREE if config.get("schedule", "plateau") != "cosine" else ("threads", "device")
    config = {k: v for k, v in config.items() if k not in free}
    return _plain(
        {
            "format": meta.get("format"),
            "model_name": meta.get("model_name"),
            "model_kwargs": meta.get("model_kwargs"),
            "config": config,
            "data": meta.get("data"),
        }
    )


def _build_model(model_name: str, model_kwargs: dict[str, Any], seed: int) -> nn.Module:
    from cxrbs.models import create_model, model_kind

    if model_kind(model_name) != "bs":
        raise CxrbsError(
            f"model {model_name!r} is a classifier, not a bone-suppression model: pick one of the "
            "bs models (" + ", ".join(names.BS_ARCHITECTURES) + ")"
        )
    return create_model(model_name, seed=seed, **model_kwargs)


def _check_data(train_pairs: np.ndarray, val_pairs: np.ndarray, cfg: TrainConfig) -> None:
    _, h, w = check_pair_stack(train_pairs, "training pairs")
    check_pair_stack(val_pairs, "validation pairs")
    if cfg.crop_size is not None and cfg.crop_size > min(h, w):
        raise CxrbsError(
            f"training setting crop_size={cfg.crop_size} exceeds the training images ({h}x{w}): "
            "lower crop_size or set it to null"
        )
    side = int(cfg.crop_size) if cfg.crop_size is not None else min(h, w)
    msssim_settings(side)  # fail now, not after the first epoch, when images are too small
    msssim_settings(val_side(cfg, *val_pairs.shape[2:]) or min(val_pairs.shape[2:]))


class _BsTask:
    """Bone suppression as a :class:`cxrbs.training.loop.Task`."""

    history_columns = HISTORY_COLUMNS

    def __init__(self, run: _Run, model_name: str, model_kwargs: dict[str, Any],
                 versions: dict[str, Any]) -> None:
        self.run, self.model_name, self.model_kwargs = run, model_name, model_kwargs
        self.versions = versions
        self.epochs = int(run.cfg.epochs)
        self.patience = int(run.cfg.early_stopping_patience)

    def epoch_context(self, epoch: int) -> AbstractContextManager[Any]:
        return _seeded_torch(self.run.cfg.seed, epoch, self.run.device)

    def current_lr(self) -> float:
        return float(self.run.optimizer.param_groups[0]["lr"])

    def train_epoch(self, epoch: int) -> loop.EpochResult:
        return loop.EpochResult(*_train_epoch(self.run, epoch))

    def validate(self, epoch: int) -> loop.Validation:
        """Lower is better: the loss, or minus the PSNR gain (``select_on: psnr_gain``)."""
        val_loss, gain = _validate(self.run, epoch)
        info = {"val_loss": val_loss, "val_psnr_gain": gain}
        return loop.Validation(-gain if self.run.cfg.select_on == "psnr_gain" else val_loss, info)

    def history_row(self, epoch: int, result: loop.EpochResult, val: loop.Validation,
                    lr_before: float, seconds: float) -> dict[str, Any]:
        return {
            "epoch": int(epoch),
            "loss": float(result.loss),
            "val_loss": float(val.info["val_loss"]),
            "val_psnr_gain": float(val.info["val_psnr_gain"]),
            "lr": float(lr_before),
            "seconds": float(seconds),
            "images_per_s": float(result.seen / result.seconds) if result.seconds > 0
            else float("nan"),
        }

    def check(self, epoch: int, val: loop.Validation, state: loop.LoopState) -> None:
        return None

    def on_improved(self, epoch: int, val: loop.Validation, state: loop.LoopState) -> None:
        return None

    def schedule(self, epoch: int, val_loss: float) -> None:
        if self.run.scheduler is not None:
            self.run.scheduler.step(val_loss)

    def metadata(self, state: loop.LoopState) -> dict[str, Any]:
        return _metadata(self.model_name, self.model_kwargs, self.run, state, self.versions)

    def model_state(self) -> dict[str, Tensor]:
        """The weights best.pt gets: the EMA's when there is one (what was validated)."""
        return loop.cpu_state(self.run.eval_model.state_dict())

    def training_state(self) -> dict[str, Any]:
        run = self.run
        state: dict[str, Any] = {
            "model_state": loop.cpu_state(run.model.state_dict()),
            "optimizer_state": run.optimizer.state_dict(),
            "scaler_state": run.scaler.state_dict(),
            "train_step": int(run.step),
        }
        if run.scheduler is not None:
            state["scheduler_state"] = run.scheduler.state_dict()
        if run.ema is not None:
            state["ema_state"] = loop.cpu_state(run.ema.state_dict())
        return state

    def load_training_state(self, ckpt: Mapping[str, Any]) -> None:
        run = self.run
        run.model.load_state_dict(ckpt["model_state"])
        run.optimizer.load_state_dict(ckpt["optimizer_state"])
        if run.scheduler is not None:
            run.scheduler.load_state_dict(ckpt["scheduler_state"])
        if run.ema is not None:
            run.ema.load_state_dict(ckpt["ema_state"])
        run.scaler.load_state_dict(ckpt["scaler_state"])
        run.step = int(ckpt.get("train_step", 0))

    def log_epoch(self, epoch: int, row: Mapping[str, Any], improved: bool) -> None:
        log.info("epoch %d/%d: loss %.5f val_loss %.5f val PSNR gain %+.3f dB lr %.2e (%.1f s)%s",
                 epoch, self.epochs, row["loss"], row["val_loss"], row["val_psnr_gain"],
                 row["lr"], row["seconds"], " *best*" if improved else "")


@contextmanager
def _seeded_torch(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Torch draws (dropout, noise) of epoch k seeded by (seed, k), leaving the caller's RNG."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        yield


def _summary(model_name: str, model_kwargs: dict[str, Any], run: _Run, state: loop.LoopState,
             meta: dict[str, Any], outdir: Path) -> dict[str, Any]:
    reason = (
        f"early stopping: no {run.cfg.select_on} improvement for "
        f"{run.cfg.early_stopping_patience} epochs"
        if state.stopped_early
        else f"reached epochs={run.cfg.epochs}"
    )
    return {
        "model_name": model_name,
        "model_kwargs": _plain(model_kwargs),
        "config": _plain(dataclasses.asdict(run.cfg)),
        "epochs_run": int(state.epoch),
        "best_epoch": int(state.best_epoch),
        "best_val_loss": float(state.best_val),
        "select_on": run.cfg.select_on,
        "best_val_psnr_gain": float(state.history[state.best_epoch - 1]["val_psnr_gain"])
        if state.best_epoch else float("nan"),
        "steps": int(run.step),
        "final_lr": float(run.optimizer.param_groups[0]["lr"]),
        "stopped_early": bool(state.stopped_early),
        "stop_reason": reason,
        "train_seconds": float(sum(r["seconds"] for r in state.history)),
        "n_train": int(run.train_pairs.shape[0]),
        "n_val": int(run.val_pairs.shape[0]),
        "crop_size": run.cfg.crop_size,
        "val_side": meta["val_side"],
        "msssim": meta["msssim"],
        "device": str(run.device),
        "versions": meta["versions"],
        "files": {
            "best": str(outdir / "best.pt"),
            "last": str(outdir / "last.pt"),
            "history": str(outdir / "history.csv"),
        },
    }


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the study) or AdamW with decay on weight tensors only (biases and norms excluded)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)


def train_bs(
    model_name: str,
    model_kwargs: dict[str, Any],
    train_pairs: np.ndarray,
    val_pairs: np.ndarray,
    cfg: TrainConfig,
    outdir: Path,
    *,
    progress: bool = True,
    low_pct: float = LOW_PCT,
    high_pct: float = HIGH_PCT,
) -> dict[str, Any]:
    """Train a bone-suppression model on (N,2,H,W) source/target stacks; resume when possible.

    Writes ``history.csv`` and ``last.pt`` every epoch, ``best.pt`` when val loss improves and
    ``train_summary.json`` at the end; returns that summary. ``low_pct``/``high_pct`` are the
    preprocessing percentiles of the stacks, recorded in the checkpoints for inference.
    """
    cfg.validate()
    outdir = atomic.ensure_dir(outdir)
    _check_data(train_pairs, val_pairs, cfg)
    configure_threads(cfg.threads)
    device = select_device(cfg.device)
    model = _build_model(model_name, dict(model_kwargs), cfg.seed).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = _optimizer(model, cfg)
    run = _Run(
        model=model,
        optimizer=optimizer,
        # Keras ReduceLROnPlateau semantics: absolute min_delta 1e-4.
        scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            factor=cfg.lr_factor,
            patience=cfg.lr_patience,
            min_lr=cfg.min_lr,
            threshold=1e-4,
            threshold_mode="abs",
        ) if cfg.schedule == "plateau" else None,
        ema=ema_of(model, cfg.ema_decay),
        augment=cfg.augment,
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
        # Validation crops are larger than the training crops but use the training MS-SSIM
        # scales and window: early stopping follows the objective being optimised.
        criterion=CombinedLoss(cfg.mae_weight, cfg.msssim_weight, settings_side=cfg.crop_size),
        device=device,
        cfg=cfg,
        train_pairs=train_pairs,
        val_pairs=val_pairs,
        progress=progress,
        low_pct=float(low_pct),
        high_pct=float(high_pct),
    )
    task = _BsTask(run, model_name, model_kwargs, environment_info(device))
    state = loop.LoopState()
    if not loop.try_resume(outdir / "last.pt", task, state, _resume_key, log, device):
        loop.forget_stale_outputs(outdir, _OUTPUTS, log)
    if state.stopped_early:
        log.info("run in %s had already stopped early at epoch %d", outdir, state.epoch)
    loop.run_epochs(task, state, outdir)
    if state.stopped_early:
        log.info("early stopping after epoch %d (best epoch %d)", state.epoch, state.best_epoch)
    meta = task.metadata(state)
    summary = _summary(model_name, model_kwargs, run, state, meta, outdir)
    atomic.write_json(outdir / "train_summary.json", summary)
    return summary
