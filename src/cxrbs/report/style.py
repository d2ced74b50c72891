"""What every figure module shares: the house style, labels, colours and the atomic PNG writer.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas, never pyplot), so nothing
needs a screen and no global figure state leaks between calls. PNGs carry no timestamp.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxrbs.core.atomic import atomic_path

DPI = 110
BS_METRICS = ("mae", "psnr", "ssim", "ms_ssim", "bsr", "bsr_energy")
#: Bone-suppression metrics where lower is better (the rest: higher is better).
BS_LOWER_IS_BETTER = ("mae",)
SIGNIFICANT_COLOUR = "#c00000"
PLAIN_COLOUR = "#222222"
CLS_METRICS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "mcc")
VARIANTS = ("baseline", "bone_suppressed")
METRIC_LABELS = {
    "mae": "MAE (lower is better)",
    "psnr": "PSNR, dB (higher is better)",
    "ssim": "SSIM (higher is better)",
    "ms_ssim": "MS-SSIM (higher is better)",
    "bsr": "BSR (higher is better)",
    "bsr_energy": "bone energy removed\n(higher is better; identity = 0)",
    "accuracy": "accuracy", "auc": "AUC", "sensitivity": "sensitivity",
    "specificity": "specificity", "precision": "precision", "f1": "F1 score", "mcc": "MCC",
}  # fmt: skip
VARIANT_LABELS = {"baseline": "baseline (original)", "bone_suppressed": "bone-suppressed"}
VARIANT_COLOURS = {"baseline": "#1f77b4", "bone_suppressed": "#d62728"}
MODEL_LABELS = {"deep": "deep model", "hog_floor": "HOG + LR floor"}
IDENTITY = "identity"
IDENTITY_COLOUR = "#b0b0b0"
BOX_COLOUR = "#39ff14"
_STYLE: dict[Any, Any] = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False,
}  # fmt: skip


@contextmanager
def figure(width: float, height: float) -> Iterator[Figure]:
    """A pyplot-free figure under the project's style (readable fonts, no top/right spines)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def save(fig: Figure, out: str | Path) -> Path:
    """Write atomically; metadata without the matplotlib version keeps reruns byte-identical."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return out


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def as_stack(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {a.shape}")
    return a


def show_gray(ax: Axes, img: np.ndarray) -> None:
    ax.imshow(np.clip(img, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """Known names in the preferred order first, then any others sorted."""
    present = list(dict.fromkeys(str(v) for v in values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def yerr(means: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Asymmetric error bars; a missing CI draws no bar instead of a NaN warning."""
    below = np.nan_to_num(means - lows, nan=0.0)
    above = np.nan_to_num(highs - means, nan=0.0)
    return np.clip(np.vstack([below, above]), 0.0, None)


def wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def fmt(value: Any) -> str:
    """Three decimals, or ``n/a`` for a missing or non-finite score."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.3f}" if np.isfinite(v) else "n/a"


def fmt_p(value: Any) -> str:
    """A p-value to 2 significant digits for a figure label; 'no p' when undefined."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        return "no p"
    if not np.isfinite(p):
        return "no p"
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def truthy(value: Any) -> bool:
    """A CSV boolean (True/False/'true'/1) as a bool; NaN and anything else False."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value).strip().lower() in ("true", "1", "yes")
