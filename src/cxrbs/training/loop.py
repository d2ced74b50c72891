"""The epoch loop shared by bone-suppression and classifier training.

What both tasks need and must not do differently: a seeded epoch plan (the batches of epoch k
depend on ``(seed, k)`` only, so a resumed epoch draws what an uninterrupted one would), a guard
against non-finite losses, early stopping on validation loss, ``best.pt`` written when validation
improves, ``last.pt`` written every epoch and a resume from it that is bitwise the uninterrupted
run. What differs (the loss, the validation metric, the schedule, collapse detection) comes in
through the small :class:`Task` protocol; the loop never looks inside the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError
from cxrbs.models.checkpoint import save_checkpoint

@dataclass
class EpochResult:
    """What one pass over the training batches reports."""

    loss: float
    seen: int
    seconds: float


@dataclass
class Validation:
    """Validation loss (lower is better, drives early stopping) and task-specific details."""

    loss: float
    info: Any = None


@dataclass
class LoopState:
    """Everything the loop carries from epoch to epoch; ``extra`` holds the task's counters."""

    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """The task-specific half of training (see bs.train and cls.train for the two users)."""

    @property
    def epochs(self) -> int: ...

    @property
    def patience(self) -> int: ...

    @property
    def history_columns(self) -> Sequence[str]: ...

    def epoch_context(self, epoch: int) -> AbstractContextManager[Any]: ...

    def current_lr(self) -> float: ...

    def train_epoch(self, epoch: int) -> EpochResult: ...

    def validate(self, epoch: int) -> Validation: ...

    def history_row(self, epoch: int, result: EpochResult, val: Validation, lr_before: float,
                    seconds: float) -> dict[str, Any]: ...

    def check(self, epoch: int, val: Validation, state: LoopState) -> None:
        """Raise to abort training (e.g. a collapsed classifier); history.csv is written first."""

    def on_improved(self, epoch: int, val: Validation, state: LoopState) -> None: ...

    def schedule(self, epoch: int, val_loss: float) -> None: ...

    def metadata(self, state: LoopState) -> dict[str, Any]: ...

    def model_state(self) -> dict[str, Tensor]: ...

    def training_state(self) -> dict[str, Any]: ...

    def load_training_state(self, ckpt: Mapping[str, Any]) -> None: ...

    def log_epoch(self, epoch: int, row: Mapping[str, Any], improved: bool) -> None: ...


# --------------------------------------------------------------------------- epoch plan


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The numpy generator of one epoch: its batches (and, for bone suppression, its crops)."""
    return np.random.default_rng([int(seed), int(epoch)])


def chunks(idx: np.ndarray, size: int) -> list[np.ndarray]:
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def epoch_batches(rng: np.random.Generator, items: np.ndarray, batch_size: int,
                  steps_per_epoch: int | None, *, min_last: int = 1) -> list[np.ndarray]:
    """Index batches of one epoch: one shuffled pass over ``items``, or ``steps_per_epoch``
    batches from back-to-back shuffles (every item seen equally often).

    A trailing batch shorter than ``min_last`` is left out (batch norm cannot train on one image).
    """
    if steps_per_epoch is None:
        batches = chunks(rng.permutation(items), batch_size)
        return batches[:-1] if len(batches) > 1 and len(batches[-1]) < min_last else batches
    need = int(steps_per_epoch) * batch_size
    reps = -(-need // items.size)
    order = np.concatenate([rng.permutation(items) for _ in range(reps)])[:need]
    return chunks(order, batch_size)


def optimise(loss: Tensor, value: float, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, error: Callable[[float], CxrbsError],
             grad_clip: float | None = None) -> None:
    """One optimiser step, refusing a non-finite loss (``error`` words the advice).

    ``grad_clip`` bounds the global L2 norm of the (unscaled) gradients: one outlier batch cannot
    throw a nearly trained model far off.
    """
    if not math.isfinite(value):
        raise error(value)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, float(grad_clip))
    scaler.step(optimizer)
    scaler.update()


def cpu_state(module_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module_state.items()}


def plain(obj: Any) -> Any:
    """Tuples -> lists, paths -> str, numpy scalars -> Python: survives torch.save/json alike."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --------------------------------------------------------------------------- resume


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


def try_resume(path: Path, task: Task, state: LoopState, key: Callable[[Mapping[str, Any]], Any],
               log: logging.Logger, device: torch.device | str = "cpu") -> bool:
    """Restore ``state`` and the task from ``last.pt`` when it belongs to the same run."""
    if not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: start over
        log.warning("not resuming: %s is unreadable (%s); starting fresh", path, exc)
        return False
    if not isinstance(ckpt, dict):
        log.warning("not resuming: %s is not a training checkpoint; starting fresh", path)
        return False
    old_key, new_key = key(ckpt), key(task.metadata(state))
    if old_key != new_key:
        log.info("not resuming from %s: it belongs to another run (%s); starting fresh", path,
                 _key_difference(old_key, new_key))
        return False
    try:
        task.load_training_state(ckpt)
        state.epoch = int(ckpt["epoch"])
        state.best_val = float(ckpt["best_val_loss"])
        state.best_epoch = int(ckpt["best_epoch"])
        state.bad_epochs = int(ckpt["bad_epochs"])
        state.stopped_early = bool(ckpt["stopped_early"])
        state.history = [dict(r) for r in ckpt["history"]]
        state.extra = dict(ckpt.get("loop_extra", {}))
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CxrbsError(f"cannot resume from {path} ({type(exc).__name__}: {exc}): move it "
                         "away to start this run over") from exc
    log.info("resuming from epoch %d (%s)", state.epoch, path)
    return True


def forget_stale_outputs(outdir: Path, names: Sequence[str], log: logging.Logger) -> None:
    """A fresh start must not leave another run's best model or summary beside the new one."""
    for name in names:
        p = outdir / name
        if p.exists():
            p.unlink()
            log.info("removed %s of an earlier, different run", p)


# --------------------------------------------------------------------------- the loop


def _save_last(path: Path, meta: dict[str, Any], task: Task, state: LoopState) -> None:
    atomic.save_torch(path, {
        **meta,
        **task.training_state(),
        "epoch": int(state.epoch),
        "best_epoch": int(state.best_epoch),
        "best_val_loss": float(state.best_val),
        "bad_epochs": int(state.bad_epochs),
        "stopped_early": bool(state.stopped_early),
        "history": [dict(r) for r in state.history],
        "loop_extra": plain(state.extra),
    })  # fmt: skip


def run_epochs(task: Task, state: LoopState, outdir: Path) -> LoopState:
    """Train until ``task.epochs`` or early stopping; ``best.pt``/``last.pt``/``history.csv``
    in ``outdir`` after every epoch (``last.pt`` before ``history.csv``, so a history row always
    has its checkpoint)."""
    history_csv = outdir / "history.csv"

    def write_history() -> None:
        atomic.write_csv(history_csv, pd.DataFrame(state.history, columns=list(task.history_columns)))

    while state.epoch < task.epochs and not state.stopped_early:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        lr = task.current_lr()
        with task.epoch_context(epoch):
            result = task.train_epoch(epoch)
            val = task.validate(epoch)
        row = task.history_row(epoch, result, val, lr, time.perf_counter() - t0)
        state.history.append(plain(row))
        state.epoch = epoch
        try:
            task.check(epoch, val, state)
        except CxrbsError:
            write_history()
            raise
        improved = val.loss < state.best_val
        if improved:
            state.best_val, state.best_epoch, state.bad_epochs = val.loss, epoch, 0
            task.on_improved(epoch, val, state)
        else:
            state.bad_epochs += 1
        task.schedule(epoch, val.loss)
        state.stopped_early = state.bad_epochs >= task.patience
        meta = task.metadata(state)
        if improved:
            save_checkpoint(outdir / "best.pt", meta, task.model_state())
        _save_last(outdir / "last.pt", meta, task, state)
        write_history()
        task.log_epoch(epoch, row, improved)
    return state
