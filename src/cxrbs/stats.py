"""Statistics shared by the stages: bone suppression (``bs/paired_stats``) and classification
(``cls/stats``, ``cls/compare``) both adjust families of p-values here, so neither stage imports
the other for it. Needs nothing of ``cxrbs`` but numpy and statsmodels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from statsmodels.stats.multitest import multipletests

__all__ = ["holm"]


def holm(p_values: Any) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels), controlling the family-wise error rate.

    NaN p-values (tests that were undefined) stay NaN and do not count towards the family size:
    a test that produced no p-value cannot produce a false positive.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out
