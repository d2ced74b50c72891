"""Step-wise learning-rate schedules that do not depend on validation (warm-up + cosine).

A schedule that is a pure function of training progress makes a run's learning rate at step k
the same whether or not the run was resumed, and lets architectures be compared at equal step
budgets. ``plateau`` (the study's ReduceLROnPlateau) stays in the trainers because it reacts to
validation loss.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "warmup_cosine"]

SCHEDULES = ("plateau", "cosine")


def warmup_cosine(progress: float, *, warmup_frac: float, min_lr_frac: float) -> float:
    """Multiplier of the base learning rate at ``progress`` = step / step budget in [0, 1].

    Linear warm-up over the first ``warmup_frac`` of the budget (from 1e-3 of the base rate, never
    zero), then half a cosine from 1 down to ``min_lr_frac`` at the end of the budget.
    """
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
    if warmup_frac > 0 and progress < warmup_frac:
        return max(progress / warmup_frac, 1e-3)
    p = min(max((progress - warmup_frac) / (1.0 - warmup_frac), 0.0), 1.0)
    return min_lr_frac + (1.0 - min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * p))
