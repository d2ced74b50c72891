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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from cxrbs.core import atomic
from cxrbs.core.device import (
    AMP_MODES,
    autocast_context,
    configure_threads,
    environment_info,
    select_device,
)
from cxrbs.core.errors import CxrbsError
from cxrbs.bs.losses import CombinedLoss, msssim_settings
from cxrbs.bs.metrics import as_float01, check_pair_stack

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "val_loss", "lr", "seconds", "images_per_s"]
CHECKPOINT_FORMAT = 1
# Config fields that may differ between a killed run and its resumption: they do not change what
# an epoch computes (more epochs extend the same run; threads/device only change speed).
_RESUME_FREE = ("epochs", "threads", "device")
_TRAINING_STATE = ("model_state", "optimizer_state", "scheduler_state", "scaler_state")


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


@dataclass
class _Run:
    """Everything one training run carries from epoch to epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler
    criterion: CombinedLoss
    device: torch.device
    cfg: TrainConfig
    train_pairs: np.ndarray
    val_pairs: np.ndarray
    progress: bool
    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def _plain(obj: Any) -> Any:
    """Tuples -> lists, paths -> str: a form that survives torch.save/json and compares equal."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def val_side(cfg: TrainConfig, height: int, width: int) -> int | None:
    """Side of the validation centre crops, or None for whole images (see module docstring)."""
    if cfg.crop_size is None:
        return None
    return min(2 * int(cfg.crop_size), height, width)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch)])


def _epoch_batches(rng: np.random.Generator, n: int, cfg: TrainConfig) -> list[np.ndarray]:
    """Index batches of one epoch: one shuffled pass, or ``steps_per_epoch`` batches drawn from
    back-to-back shuffles (so every pair is seen equally often)."""
    bs = int(cfg.batch_size)
    if cfg.steps_per_epoch is None:
        order = rng.permutation(n)
        return [order[i : i + bs] for i in range(0, n, bs)]
    need = int(cfg.steps_per_epoch) * bs
    order = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]
    return [order[i : i + bs] for i in range(0, need, bs)]


def _load_batch(
    pairs: np.ndarray, idx: np.ndarray, crop: int | None, rng: np.random.Generator
) -> Tensor:
    """(B,2,c,c) float32 tensor; the same random crop window for source and target."""
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


def _loss(run: _Run, x: Tensor, y: Tensor) -> Tensor:
    with autocast_context(run.device, run.cfg.amp):
        pred = run.model(x)
    return run.criterion(pred, y) + _penalty(run.model)


def _non_finite(what: str, epoch: int, step: int | None, run: _Run) -> CxrbsError:
    where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
    return CxrbsError(
        f"{what} became non-finite at {where}: lower the learning rate (lr is "
        f"{run.optimizer.param_groups[0]['lr']:g}) or set amp: none (amp is {run.cfg.amp!r})"
    )


def _train_epoch(run: _Run, epoch: int) -> tuple[float, int, float]:
    """One epoch of optimisation: (mean training loss per image, images seen, seconds)."""
    cfg = run.cfg
    rng = _epoch_rng(cfg.seed, epoch)
    batches = _epoch_batches(rng, run.train_pairs.shape[0], cfg)
    run.model.train()
    total, seen = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not run.progress)
    for step, idx in enumerate(bar, start=1):
        x, y = _to_device(_load_batch(run.train_pairs, idx, cfg.crop_size, rng), run)
        loss = _loss(run, x, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _non_finite("training loss", epoch, step, run)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        total += value * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
    bar.close()
    return total / seen, seen, time.perf_counter() - t0


def _validate(run: _Run, epoch: int) -> float:
    """Mean loss per validation image, same loss as training (penalty included, like Keras)."""
    pairs, bs = run.val_pairs, int(run.cfg.val_batch_size)
    side = val_side(run.cfg, pairs.shape[2], pairs.shape[3])
    run.model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, pairs.shape[0], bs):
            x, y = _to_device(_centre_crop(pairs, start, start + bs, side), run)
            total += float(_loss(run, x, y)) * x.shape[0]
    value = total / pairs.shape[0]
    if not math.isfinite(value):
        raise _non_finite("validation loss", epoch, None, run)
    return value


def _msssim_meta(side: int) -> dict[str, Any]:
    win, weights = msssim_settings(side)
    return {"side": int(side), "win_size": int(win), "weights": [float(w) for w in weights]}


def _metadata(
    model_name: str, model_kwargs: dict[str, Any], run: _Run, versions: dict[str, Any]
) -> dict[str, Any]:
    cfg = run.cfg
    _, _, h, w = run.train_pairs.shape
    _, _, vh, vw = run.val_pairs.shape
    train_side = int(cfg.crop_size) if cfg.crop_size is not None else min(h, w)
    vside = val_side(cfg, vh, vw)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_name": model_name,
        "model_kwargs": _plain(model_kwargs),
        "config": _plain(dataclasses.asdict(cfg)),
        "seed": int(cfg.seed),
        "versions": versions,
        "device": str(run.device),
        "epoch": int(run.epoch),
        "best_epoch": int(run.best_epoch),
        "best_val_loss": float(run.best_val),
        "crop_size": cfg.crop_size,
        "val_side": vside,
        "msssim": {
            "train": _msssim_meta(train_side),
            "val": _msssim_meta(vside if vside is not None else min(vh, vw)),
        },
        "data": {
            "train_shape": [int(s) for s in run.train_pairs.shape],
            "val_shape": [int(s) for s in run.val_pairs.shape],
        },
    }


def _cpu_state(module_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module_state.items()}


def _save_last(path: Path, meta: dict[str, Any], run: _Run) -> None:
    atomic.save_torch(
        path,
        {
            **meta,
            "model_state": _cpu_state(run.model.state_dict()),
            "optimizer_state": run.optimizer.state_dict(),
            "scheduler_state": run.scheduler.state_dict(),
            "scaler_state": run.scaler.state_dict(),
            "bad_epochs": int(run.bad_epochs),
            "stopped_early": bool(run.stopped_early),
            "history": [dict(r) for r in run.history],
        },
    )


def _resume_key(meta: Mapping[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in dict(meta.get("config", {})).items() if k not in _RESUME_FREE}
    return _plain(
        {
            "format": meta.get("format"),
            "model_name": meta.get("model_name"),
            "model_kwargs": meta.get("model_kwargs"),
            "config": config,
            "data": meta.get("data"),
        }
    )


def _key_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = []
    for key in new:
        if isinstance(new[key], dict) and isinstance(old.get(key), dict):
            for sub in sorted(set(new[key]) | set(old[key])):
                if old[key].get(sub) != new[key].get(sub):
                    diffs.append(f"{key}.{sub}: {old[key].get(sub)!r} -> {new[key].get(sub)!r}")
        elif old.get(key) != new[key]:
            diffs.append(f"{key}: {old.get(key)!r} -> {new[key]!r}")
    return "; ".join(diffs)


def _try_resume(path: Path, meta: dict[str, Any], run: _Run) -> bool:
    """Restore ``run`` from ``last.pt`` when it belongs to the same run; say why not otherwise."""
    if not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location=run.device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: start over
        log.warning("not resuming: %s is unreadable (%s); starting fresh", path, exc)
        return False
    old_key, new_key = _resume_key(ckpt), _resume_key(meta)
    if old_key != new_key:
        log.info(
            "not resuming from %s: it belongs to another run (%s); starting fresh",
            path,
            _key_difference(old_key, new_key),
        )
        return False
    try:
        run.model.load_state_dict(ckpt["model_state"])
        run.optimizer.load_state_dict(ckpt["optimizer_state"])
        run.scheduler.load_state_dict(ckpt["scheduler_state"])
        run.scaler.load_state_dict(ckpt["scaler_state"])
        run.epoch = int(ckpt["epoch"])
        run.best_val = float(ckpt["best_val_loss"])
        run.best_epoch = int(ckpt["best_epoch"])
        run.bad_epochs = int(ckpt["bad_epochs"])
        run.stopped_early = bool(ckpt["stopped_early"])
        run.history = [dict(r) for r in ckpt["history"]]
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CxrbsError(
            f"cannot resume from {path}: {exc}; delete it to start this run over"
        ) from exc
    log.info("resuming from epoch %d (%s)", run.epoch, path)
    return True


def _forget_stale_outputs(outdir: Path) -> None:
    """A fresh start must not leave another run's best model or summary beside the new one."""
    for name in ("best.pt", "last.pt", "history.csv", "train_summary.json"):
        p = outdir / name
        if p.exists():
            p.unlink()
            log.info("removed %s of an earlier, different run", p)


def _build_model(model_name: str, model_kwargs: dict[str, Any], seed: int) -> nn.Module:
    from cxrbs.models import create_model, model_kind

    if model_kind(model_name) != "bs":
        raise CxrbsError(
            f"model {model_name!r} is a classifier, not a bone-suppression model: pick one of the "
            "bs models (resnet_bs, ae_bs, convnet_bs, rl_bs)"
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


def _end_epoch(
    run: _Run, epoch: int, loss: float, val: float, lr: float, stats: tuple[int, float, float]
) -> bool:
    """Record the epoch, step the scheduler and early stopping; True when val loss improved."""
    seen, train_s, total_s = stats
    run.history.append(
        {
            "epoch": int(epoch),
            "loss": float(loss),
            "val_loss": float(val),
            "lr": float(lr),
            "seconds": float(total_s),
            "images_per_s": float(seen / train_s) if train_s > 0 else float("nan"),
        }
    )
    run.epoch = epoch
    run.scheduler.step(val)
    improved = val < run.best_val
    if improved:
        run.best_val, run.best_epoch, run.bad_epochs = val, epoch, 0
    else:
        run.bad_epochs += 1
    run.stopped_early = run.bad_epochs >= run.cfg.early_stopping_patience
    return improved


def _summary(
    model_name: str, model_kwargs: dict[str, Any], run: _Run, meta: dict[str, Any], outdir: Path
) -> dict[str, Any]:
    n_epochs_budget = run.cfg.epochs
    reason = (
        f"early stopping: no val_loss improvement for {run.cfg.early_stopping_patience} epochs"
        if run.stopped_early
        else f"reached epochs={n_epochs_budget}"
    )
    return {
        "model_name": model_name,
        "model_kwargs": _plain(model_kwargs),
        "config": _plain(dataclasses.asdict(run.cfg)),
        "epochs_run": int(run.epoch),
        "best_epoch": int(run.best_epoch),
        "best_val_loss": float(run.best_val),
        "final_lr": float(run.optimizer.param_groups[0]["lr"]),
        "stopped_early": bool(run.stopped_early),
        "stop_reason": reason,
        "train_seconds": float(sum(r["seconds"] for r in run.history)),
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


def train_bs(
    model_name: str,
    model_kwargs: dict[str, Any],
    train_pairs: np.ndarray,
    val_pairs: np.ndarray,
    cfg: TrainConfig,
    outdir: Path,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a bone-suppression model on (N,2,H,W) source/target stacks; resume when possible.

    Writes ``history.csv`` and ``last.pt`` every epoch, ``best.pt`` when val loss improves and
    ``train_summary.json`` at the end; returns that summary.
    """
    cfg.validate()
    outdir = atomic.ensure_dir(outdir)
    _check_data(train_pairs, val_pairs, cfg)
    configure_threads(cfg.threads)
    device = select_device(cfg.device)
    model = _build_model(model_name, dict(model_kwargs), cfg.seed).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
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
        ),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
        criterion=CombinedLoss(cfg.mae_weight, cfg.msssim_weight),
        device=device,
        cfg=cfg,
        train_pairs=train_pairs,
        val_pairs=val_pairs,
        progress=progress,
    )
    versions = environment_info(device)
    last_path, best_path = outdir / "last.pt", outdir / "best.pt"
    if not _try_resume(last_path, _metadata(model_name, model_kwargs, run, versions), run):
        _forget_stale_outputs(outdir)
    if run.stopped_early:
        log.info("run in %s had already stopped early at epoch %d", outdir, run.epoch)
    while run.epoch < cfg.epochs and not run.stopped_early:
        epoch = run.epoch + 1
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0]))
            loss, seen, train_s = _train_epoch(run, epoch)
            val = _validate(run, epoch)
        improved = _end_epoch(run, epoch, loss, val, lr, (seen, train_s, time.perf_counter() - t0))
        meta = _metadata(model_name, model_kwargs, run, versions)
        if improved:
            atomic.save_torch(best_path, {**meta, "model_state": _cpu_state(model.state_dict())})
        _save_last(last_path, meta, run)
        atomic.write_csv(outdir / "history.csv", pd.DataFrame(run.history, columns=HISTORY_COLUMNS))
        log.info(
            "epoch %d/%d: loss %.5f val_loss %.5f lr %.2e (%.1f s)%s",
            epoch,
            cfg.epochs,
            loss,
            val,
            lr,
            run.history[-1]["seconds"],
            " *best*" if improved else "",
        )
    if run.stopped_early:
        log.info("early stopping after epoch %d (best epoch %d)", run.epoch, run.best_epoch)
    meta = _metadata(model_name, model_kwargs, run, versions)
    summary = _summary(model_name, model_kwargs, run, meta, outdir)
    atomic.write_json(outdir / "train_summary.json", summary)
    return summary


def load_bs_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from ``best.pt``/``last.pt`` (eval mode) and return it with its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CxrbsError(f"checkpoint {path} not found: train the model first or fix the path")
    dev = select_device(str(device))
    try:
        ckpt = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types for a damaged file
        raise CxrbsError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}): "
            "delete it and train again"
        ) from exc
    required = ("model_name", "model_kwargs", "model_state")
    missing = [k for k in required if not (isinstance(ckpt, dict) and k in ckpt)]
    if missing:
        raise CxrbsError(
            f"checkpoint {path} lacks {', '.join(missing)}: it was not written by cxrbs train"
        )
    from cxrbs.models import create_model

    model = create_model(str(ckpt["model_name"]), **dict(ckpt["model_kwargs"]))
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise CxrbsError(
            f"checkpoint {path} does not fit model {ckpt['model_name']!r} "
            f"{ckpt['model_kwargs']}: {exc}"
        ) from exc
    model.to(dev).eval()
    meta = {k: v for k, v in ckpt.items() if k not in _TRAINING_STATE}
    return model, meta


def predict_images(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 4,
    amp: str = "none",
    channels_last: bool = False,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Bone-suppressed (N,H,W) float32 images in [0, 1] from (N,H,W) radiographs, batch by batch.

    ``device=None`` keeps the model where it is; otherwise the model is moved there (and to
    channels-last memory when asked), which changes the model object in place.
    """
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 3:
        raise CxrbsError(f"predict_images takes an (N,H,W) image stack, got shape {shape}")
    if int(batch_size) < 1:
        raise CxrbsError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        model.to(select_device(str(device)))
    dev = next(model.parameters()).device
    if channels_last:
        model.to(memory_format=torch.channels_last)
    out = np.empty(shape, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, shape[0], int(batch_size)):
                x = torch.from_numpy(as_float01(images[start : start + int(batch_size)]))[:, None]
                x = x.to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(dev, amp):
                    y = model(x)
                out[start : start + x.shape[0]] = y.float().clamp(0.0, 1.0)[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return out
