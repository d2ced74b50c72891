"""Which images the figures show: best/median/worst examples and right/wrong TB cases.

Pure numpy, so the explain rule (which picks the cases) and the plotting modules (which order
rows by the same rule) share it without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def example_indices(
    metric_values: Sequence[float] | np.ndarray, *, higher_is_better: bool = True
) -> list[tuple[str, int]]:
    """(kind, index) of the best, median and worst image; duplicates dropped for tiny sets."""
    vals = np.asarray(metric_values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(vals))
    if finite.size == 0:
        return []
    order = finite[np.argsort(vals[finite], kind="stable")]
    if higher_is_better:
        order = order[::-1]
    picks = [("best", int(order[0])), ("median", int(order[len(order) // 2])),
             ("worst", int(order[-1]))]
    seen: set[int] = set()
    out = []
    for kind, idx in picks:
        if idx not in seen:
            seen.add(idx)
            out.append((kind, idx))
    return out


def select_crm_cases(labels: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray,
                     threshold: float,
                     n: int) -> list[tuple[int, bool]]:
    """(index, correct) of up to ``n`` TB cases: half the most confidently right, half the most
    clearly missed; a short side is filled from the other, so the figure always has ``n`` rows
    where the set allows."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(prob, dtype=float)
    tb = np.flatnonzero((y == 1) & np.isfinite(p))
    right = [int(i) for i in tb[np.argsort(-p[tb], kind="stable")] if p[i] >= threshold]
    wrong = [int(i) for i in tb[np.argsort(p[tb], kind="stable")] if p[i] < threshold]
    n_right = min(len(right), max(math.ceil(n / 2), n - len(wrong)))
    n_wrong = min(len(wrong), n - n_right)
    return [(i, True) for i in right[:n_right]] + [(i, False) for i in wrong[:n_wrong]]
