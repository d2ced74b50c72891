#!/usr/bin/env python
"""Train the bundled bone-suppression model from one YAML config, deterministically.

    .venv/bin/python benchmarks/train_bundled_bs.py benchmarks/bundled_bs.yaml

What it does, in order:
  1. reads every BSE-JSRT pair with ``cxrbs.data.io.read_image`` and prepares it at ``image_size`` with
     ``cxrbs.data.preprocess.preprocess_pair`` (mode "shared": the SOURCE's 1/99 percentile stretch
     applied to both images, so target ~ source - bone and the identity baseline is meaningful);
  2. makes a seeded patient-level split (one file = one patient), stratified by the JSRT
     nodule/no-nodule prefix, and writes it as split.csv;
  3. trains on random crops with flips and pair-consistent intensity augmentation (gamma, a
     re-stretch with jittered window, Gaussian noise; all applied to source and target alike, so
     the target stays the soft-tissue image of the augmented source), with AdamW, linear warm-up
     + cosine decay and an exponential moving average (EMA) of the weights;
  4. validates the EMA weights on whole validation images every ``eval_every`` steps (PSNR and
     MS-SSIM beside the identity baseline) and keeps the best by validation PSNR;
  5. writes a plain fp32 state dict ({"model_name", "model_kwargs", "state_dict"}) and a
     checkpoint in cxrbs's one format (``cxrbs.models.checkpoint``: kind, input size, percentiles,
     output mode), loadable by ``cxrbs suppress --model``.

Everything random is drawn from generators seeded by ``seed``; with a fixed thread count two runs
give identical weights on the CPU. Runs may also be bounded by wall time (``max_minutes``), which
the recipe search uses for equal-budget comparisons (it counts this process's CPU time, so a
busy machine does not shorten a candidate's budget); that bound is not deterministic.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from cxrbs.core import atomic
from cxrbs.core.device import environment_info
from cxrbs.data.io import read_image
from cxrbs.bs.losses import CombinedLoss
from cxrbs.bs.metrics import ms_ssim, psnr
from cxrbs.models import create_model
from cxrbs.models.checkpoint import header, save_checkpoint
from cxrbs.data.preprocess import apply_stretch, preprocess_pair, stretch_limits

log = logging.getLogger("train_bundled")


# ----------------------------------------------------------------------------- configuration


@dataclass
class AugmentConfig:
    """Pair-consistent augmentation; every intensity change is applied to source and target."""

    hflip: float = 0.5
    vflip: float = 0.0
    gamma: tuple[float, float] = (0.7, 1.4)  # x -> x**g, g log-uniform in this range
    window_jitter: float = 0.06  # re-stretch lo in [-j, j], hi in [1-j, 1+j]
    noise_std: tuple[float, float] = (0.0, 0.01)  # additive Gaussian noise, std uniform in range
    prob: float = 0.8  # probability that the intensity augmentation is applied to a crop


@dataclass
class Config:
    seed: int = 2026
    data_dir: str = "../shared/data/bse-jsrt"
    cache: str | None = None
    image_size: int = 256
    low_pct: float = 1.0
    high_pct: float = 99.0
    split_fractions: tuple[float, float, float] = (0.766, 0.117, 0.117)  # ~98/15/15 of 128
    split_csv: str = "bundled_bs_out/split.csv"
    model_name: str = "unet_bs"
    model_kwargs: dict[str, Any] = field(default_factory=lambda: {"width": 16, "levels": 4})
    crop: int = 128
    batch_size: int = 8
    steps: int = 3000
    max_minutes: float | None = None  # CPU-time budget (process time), for the recipe search
    deadline_minutes: float | None = None  # wall-clock safety stop; the summary says if it fired
    # Stop after this step while the LR schedule still runs over ``steps``: reproduces a run that a
    # wall-clock deadline ended, deterministically (the bundled model was trained that way).
    stop_at_step: int | None = None
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    warmup_frac: float = 0.03
    min_lr_frac: float = 0.02
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    mae_weight: float = 0.16
    msssim_weight: float = 0.84
    amp: str = "none"  # none | bf16 (CPU autocast)
    threads: int = 2
    eval_every: int = 250
    log_every: int = 50
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    out_dir: str = "bundled_bs_out"
    weights_name: str = "bundled_bs.pt"
    package_ckpt_name: str = "bundled_bs_cxrbs.pt"
    log_file: str | None = "bundled_bs_out/train_bundled.log"

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Config:
        raw = dict(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; valid: {sorted(known)}")
        aug = raw.pop("augment", None) or {}
        aug_known = {f.name for f in dataclasses.fields(AugmentConfig)}
        if set(aug) - aug_known:
            raise ValueError(f"unknown augment key(s) {sorted(set(aug) - aug_known)}")
        aug_cfg = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        if "split_fractions" in raw:
            raw["split_fractions"] = tuple(raw["split_fractions"])
        cfg = cls(**raw, augment=aug_cfg)
        if abs(sum(cfg.split_fractions) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must sum to 1, got {cfg.split_fractions}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ----------------------------------------------------------------------------- data


def load_pairs(cfg: Config) -> tuple[list[str], np.ndarray]:
    """(names, (N,2,S,S) float32) of every pair, preprocessed as the package does; cached."""
    cache = Path(cfg.cache) if cfg.cache else None
    key = f"{cfg.data_dir}|{cfg.image_size}|{cfg.low_pct}|{cfg.high_pct}|shared"
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return [str(n) for n in z["names"]], z["pairs"].astype(np.float32)
    src_dir, tgt_dir = Path(cfg.data_dir) / "source", Path(cfg.data_dir) / "target"
    names = sorted(p.name for p in src_dir.glob("*.png"))
    pairs = np.empty((len(names), 2, cfg.image_size, cfg.image_size), dtype=np.float32)
    for i, name in enumerate(names):
        s, t = preprocess_pair(
            read_image(src_dir / name), read_image(tgt_dir / name), cfg.image_size,
            low_pct=cfg.low_pct, high_pct=cfg.high_pct, mode="shared", name=name,
        )
        pairs[i, 0], pairs[i, 1] = s, t
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), names=np.array(names), pairs=pairs)
    return names, pairs


def make_split(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Patient-level split (one file = one JSRT patient), stratified by nodule / no nodule."""
    rng = np.random.default_rng([seed, 7])
    split: dict[str, str] = {}
    for prefix in sorted({n[:5] for n in names}):
        group = sorted(n for n in names if n[:5] == prefix)
        order = [group[i] for i in rng.permutation(len(group))]
        n_val = round(fractions[1] * len(group))
        n_test = round(fractions[2] * len(group))
        for i, n in enumerate(order):
            split[n] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return dict(sorted(split.items()))


def write_split(split: dict[str, str], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "patient_id", "split"])
        for name, part in split.items():
            w.writerow([name, Path(name).stem, part])


def split_arrays(
    names: list[str], pairs: np.ndarray, split: dict[str, str]
) -> dict[str, tuple[list[str], np.ndarray]]:
    out = {}
    for part in ("train", "val", "test"):
        idx = [i for i, n in enumerate(names) if split[n] == part]
        out[part] = ([names[i] for i in idx], pairs[idx])
    return out


def augment_pair(s: np.ndarray, t: np.ndarray, aug: AugmentConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flips and one monotone intensity map f applied to both images, then a shared noise field.

    The target stays f(source_without_bone) + noise ~ the soft-tissue image of the augmented
    source, so the bone layer the model must predict is the augmented source's own. The
    re-stretch keeps the input a [0,1] image with roughly the 1/99 percentile saturation it has
    at inference.
    """
    if rng.random() < aug.hflip:
        s, t = s[:, ::-1], t[:, ::-1]
    if rng.random() < aug.vflip:
        s, t = s[::-1], t[::-1]
    if rng.random() < aug.prob:
        g = math.exp(rng.uniform(math.log(aug.gamma[0]), math.log(aug.gamma[1])))
        s, t = np.power(np.clip(s, 0, 1), g), np.power(np.clip(t, 0, 1), g)
        j = aug.window_jitter
        lo, hi = rng.uniform(-j, j), rng.uniform(1 - j, 1 + j)
        s = np.clip((s - lo) / (hi - lo), 0.0, 1.0)
        t = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
        std = rng.uniform(*aug.noise_std)
        if std > 0:
            n = rng.normal(0.0, std, size=s.shape)
            s, t = np.clip(s + n, 0.0, 1.0), np.clip(t + n, 0.0, 1.0)
    return np.ascontiguousarray(s, dtype=np.float32), np.ascontiguousarray(t, dtype=np.float32)


def sample_batch(pairs: np.ndarray, cfg: Config, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    n, _, h, w = pairs.shape
    idx = rng.integers(0, n, size=cfg.batch_size)
    xs, ys = [], []
    for i in idx:
        y0 = int(rng.integers(0, h - cfg.crop + 1))
        x0 = int(rng.integers(0, w - cfg.crop + 1))
        s = pairs[i, 0, y0:y0 + cfg.crop, x0:x0 + cfg.crop]
        t = pairs[i, 1, y0:y0 + cfg.crop, x0:x0 + cfg.crop]
        s, t = augment_pair(s, t, cfg.augment, rng)
        xs.append(s)
        ys.append(t)
    return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]


# ----------------------------------------------------------------------------- training parts


def lr_factor(progress: float, cfg: Config) -> float:
    """Multiplier of cfg.lr at training progress in [0, 1]: linear warm-up, then cosine/constant."""
    if cfg.warmup_frac > 0 and progress < cfg.warmup_frac:
        return max(progress / cfg.warmup_frac, 1e-3)
    if cfg.schedule == "constant":
        return 1.0
    p = (progress - cfg.warmup_frac) / max(1e-9, 1.0 - cfg.warmup_frac)
    p = min(max(p, 0.0), 1.0)
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p))


class EMA:
    """Exponential moving average of parameters and buffers, with the usual early warm-up."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


def autocast(amp: str) -> contextlib.AbstractContextManager[Any]:
    if amp == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict(model: nn.Module, images: np.ndarray, amp: str = "none", batch: int = 4) -> np.ndarray:
    model.eval()
    out = np.empty_like(images)
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch])[:, None]
        with autocast(amp):
            y = model(x)
        out[i:i + batch] = y.float().clamp(0, 1)[:, 0].numpy()
    return out


def validate(model: nn.Module, pairs: np.ndarray, amp: str = "none") -> dict[str, float]:
    """Mean PSNR / MS-SSIM on whole images and their gains over the identity baseline.

    Runs in fp32 by default, as ``cxrbs suppress`` does, even when training used bf16."""
    src, tgt = pairs[:, 0], pairs[:, 1]
    pred = predict(model, src, amp)
    p = [psnr(a, b) for a, b in zip(pred, tgt)]
    p0 = [psnr(a, b) for a, b in zip(src, tgt)]
    m = [ms_ssim(a, b) for a, b in zip(pred, tgt)]
    m0 = [ms_ssim(a, b) for a, b in zip(src, tgt)]
    return {
        "psnr": float(np.mean(p)), "psnr_identity": float(np.mean(p0)),
        "psnr_gain": float(np.mean(p) - np.mean(p0)),
        "ms_ssim": float(np.mean(m)), "ms_ssim_identity": float(np.mean(m0)),
        "ms_ssim_gain": float(np.mean(m) - np.mean(m0)),
    }


def state_fp32(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- main loop


def train(cfg: Config, *, write_outputs: bool = True) -> dict[str, Any]:
    """Train per ``cfg``; returns a summary (best validation numbers, timings, paths)."""
    torch.set_num_threads(int(cfg.threads))
    names, pairs = load_pairs(cfg)
    split = make_split(names, cfg.split_fractions, cfg.seed)
    if write_outputs:
        write_split(split, cfg.split_csv)
    parts = split_arrays(names, pairs, split)
    train_pairs, val_pairs = parts["train"][1], parts["val"][1]
    log.info("split: %d train / %d val / %d test patients", len(parts["train"][0]),
             len(parts["val"][0]), len(parts["test"][0]))

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model_name, seed=cfg.seed, **cfg.model_kwargs)
    n_params = sum(p.numel() for p in model.parameters())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    else:
        raise ValueError(f"optimizer must be adamw or adam, got {cfg.optimizer!r}")
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    criterion = CombinedLoss(cfg.mae_weight, cfg.msssim_weight)
    rng = np.random.default_rng([cfg.seed, 1])
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None

    best: dict[str, Any] = {"psnr_gain": -math.inf}
    best_state: dict[str, Tensor] | None = None
    history: list[dict[str, float]] = []
    t_start = time.perf_counter()
    cpu_start = time.process_time()  # the budget counts this process's CPU time: fair under load
    train_s, seen, running = 0.0, 0, 0.0
    step = 0
    stopped_by_deadline = False
    while not stopped_by_deadline:
        elapsed = time.process_time() - cpu_start
        progress = step / cfg.steps
        if budget_s:
            progress = max(progress, elapsed / budget_s)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(progress, cfg)
        t0 = time.perf_counter()
        model.train()
        x, y = sample_batch(train_pairs, cfg, rng)
        with autocast(cfg.amp):
            pred = model(x)
        loss = criterion(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        train_s += time.perf_counter() - t0
        seen += x.shape[0]
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"loss became non-finite at step {step}")
        running = value if step == 1 else 0.98 * running + 0.02 * value
        if step % cfg.log_every == 0:
            log.info("step %d loss %.5f lr %.2e %.1f img/s %.1f min", step, running,
                     opt.param_groups[0]["lr"], seen / train_s, (time.perf_counter() - t_start) / 60)
        last = (step >= cfg.steps) or (budget_s and time.process_time() - cpu_start >= budget_s)
        if cfg.stop_at_step is not None and step >= cfg.stop_at_step:
            last, stopped_by_deadline = True, True  # ends the loop after this step's validation
        late = bool(cfg.deadline_minutes) and (
            time.perf_counter() - t_start >= 60 * cfg.deadline_minutes)
        if late:
            stopped_by_deadline = True
            log.warning("wall-clock deadline reached at step %d: stopping early", step)
        last = bool(last or late)
        if step % cfg.eval_every == 0 or last:
            net = ema.model if ema is not None else model
            v = validate(net, val_pairs)  # fp32, as deployed
            v.update(step=step, minutes=(time.perf_counter() - t_start) / 60, loss=running)
            history.append(v)
            improved = v["psnr_gain"] > best["psnr_gain"]
            if improved:
                best, best_state = dict(v), state_fp32(net)
                if write_outputs:  # keep the best weights on disk at every improvement
                    partial = {"steps": step, "best": best}
                    save_outputs(cfg, best_state, partial, train_pairs.shape, val_pairs.shape)
            log.info("val step %d: PSNR %+.3f dB, MS-SSIM %+.5f over identity%s", step,
                     v["psnr_gain"], v["ms_ssim_gain"], "  *best*" if improved else "")
    minutes = (time.perf_counter() - t_start) / 60
    cpu_minutes = (time.process_time() - cpu_start) / 60
    assert best_state is not None
    summary = {
        "config": cfg.to_dict(), "n_params": int(n_params), "steps": step,
        "minutes": minutes, "cpu_minutes": cpu_minutes,
        "images_per_s": seen / train_s, "stopped_by_deadline": stopped_by_deadline,
        "best": best, "history": history,
        "n_train": len(parts["train"][0]), "n_val": len(parts["val"][0]),
        "n_test": len(parts["test"][0]),
    }
    if write_outputs:
        summary["files"] = save_outputs(cfg, best_state, summary, train_pairs.shape, val_pairs.shape)
    summary["state_dict"] = best_state
    return summary


def save_outputs(cfg: Config, state: dict[str, Tensor], summary: dict[str, Any],
                 train_shape: tuple[int, ...], val_shape: tuple[int, ...]) -> dict[str, str]:
    """Plain fp32 state dict plus a checkpoint following cxrbs.train's metadata conventions."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = out / cfg.weights_name
    atomic.save_torch(plain, {"model_name": cfg.model_name, "model_kwargs": dict(cfg.model_kwargs),
                "state_dict": state})
    pkg = out / cfg.package_ckpt_name
    meta = header(kind="bs", model_name=cfg.model_name, model_kwargs=dict(cfg.model_kwargs),
                  input_size=int(cfg.image_size), seed=int(cfg.seed),
                  versions=environment_info(torch.device("cpu")), low_pct=cfg.low_pct,
                  high_pct=cfg.high_pct, output_mode=str(cfg.model_kwargs.get("output", "residual")))
    save_checkpoint(pkg, {**meta, "recipe": cfg.to_dict(), "steps": int(summary["steps"]),
                          "best_step": int(summary["best"]["step"]),
                          "data": {"train_shape": [int(s) for s in train_shape],
                                   "val_shape": [int(s) for s in val_shape]},
                          "validation": {k: float(v) for k, v in summary["best"].items()}},
                    state)
    return {"weights": str(plain), "package_checkpoint": str(pkg)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path)
    args = ap.parse_args()
    cfg = Config.from_yaml(args.config)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if cfg.log_file:
        Path(cfg.log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(cfg.log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    summary = train(cfg)
    summary.pop("state_dict")
    path = Path(cfg.out_dir) / "train_summary.json"
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    log.info("done: best val PSNR gain %+.3f dB at step %d (%.1f min); wrote %s",
             summary["best"]["psnr_gain"], summary["best"]["step"], summary["minutes"], path)


if __name__ == "__main__":
    main()
