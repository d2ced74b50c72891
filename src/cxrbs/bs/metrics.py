"""Image-quality metrics for bone suppression, per image, on float images in [0, 1].

Every number here means something only beside the identity baseline (prediction = input) on the
same pairs: on BSE-JSRT the input alone already scores about 38 dB PSNR, because bone shadows
change few pixels. ``evaluate_pairs(None, ...)`` gives that baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from skimage.metrics import structural_similarity

from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import as_float01
from cxrbs.bs.losses import msssim, msssim_settings

PSNR_CAP_DB = 100.0
METRIC_COLUMNS = ("mae", "psnr", "ssim", "ms_ssim", "bsr", "bsr_energy")


def check_pair_stack(pairs: np.ndarray, what: str = "pairs") -> tuple[int, int, int]:
    """(N, H, W) of an (N,2,H,W) source/target stack, or a CxrbsError naming ``what``."""
    shape = getattr(pairs, "shape", None)
    if shape is None or len(shape) != 4 or shape[1] != 2 or shape[0] < 1:
        raise CxrbsError(
            f"{what}: expected a non-empty (N,2,H,W) stack of source/target pairs, "
            f"got shape {shape}"
        )
    return int(shape[0]), int(shape[2]), int(shape[3])


def _as_image(a: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(a, dtype=np.float64)
    if img.ndim != 2:
        raise CxrbsError(f"metric input {name} must be a 2-D image, got shape {img.shape}")
    return img


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_image(pred, "pred"), _as_image(target, "target")
    if p.shape != t.shape:
        raise CxrbsError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    return p, t


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """10*log10(1/MSE) for data range 1, capped at 100 dB.

    The cap keeps identical images (MSE 0) finite so means and CIs stay defined; 100 dB is the
    value BS-LDM's evaluation code returns for them, and no real prediction comes near it
    (100 dB is an RMS error of 1e-5, below uint16 quantisation).
    """
    p, t = _pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    if mse <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / mse))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM with Wang et al.'s Gaussian window (sigma 1.5, 11 px) as TF and pytorch-msssim use,
    so it is comparable to the study's numbers (needs images of at least 11 px)."""
    p, t = _pair(pred, target)
    if min(p.shape) < 11:
        raise CxrbsError(f"SSIM needs images of at least 11x11 px, got {p.shape}")
    return float(
        structural_similarity(
            p, t, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def ms_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data range 1) with the window/scales ``msssim_settings`` picks."""
    p, t = _pair(pred, target)
    win, weights = msssim_settings(min(p.shape))
    with torch.no_grad():
        x = torch.from_numpy(p)[None, None]
        y = torch.from_numpy(t)[None, None]
        return float(msssim(x, y, win_size=win, weights=weights))


def bone_suppression_ratio(source: np.ndarray, pred: np.ndarray, target: np.ndarray) -> float:
    """BSR as BS-LDM and GL-LCM compute it, so our numbers compare with theirs.

    Their code (github.com/diaoquesang/BS-LDM, BS-LDM/metrics.py, and diaoquesang/GL-LCM,
    codes/metrics.py, function ``cal_BSR``): bone = source - target; the prediction is shifted by
    mean(target - pred) (global brightness offsets are forgiven); only the positive part of
    target - shifted prediction counts; BSR = 1 - sum(residual^2) / sum(bone^2).

    Beware: being one-sided, it ignores residual bone that is brighter than the target (bones are
    bright in display polarity), so the identity baseline scores well above 0 (about 0.8-0.9 on
    sparse rib patterns). ``bone_energy_removed`` is the two-sided fraction. NaN when
    source == target (no bone signal).
    """
    s, p = _pair(source, pred)
    _, t = _pair(source, target)
    bone = s - t
    denom = float(np.sum(bone**2))
    if denom <= 0.0:
        return float("nan")
    shifted = p + np.mean(t - p)
    residual = np.clip(t - shifted, 0.0, None)
    return 1.0 - float(np.sum(residual**2)) / denom


def bone_energy_removed(source: np.ndarray, pred: np.ndarray, target: np.ndarray) -> float:
    """1 - sum((pred-target)^2) / sum((source-target)^2): the fraction of bone energy removed.

    1 for a perfect prediction, 0 for the identity baseline, negative when the prediction is
    further from the target than the input was. NaN when source == target.
    """
    s, p = _pair(source, pred)
    _, t = _pair(source, target)
    denom = float(np.sum((s - t) ** 2))
    if denom <= 0.0:
        return float("nan")
    return 1.0 - float(np.sum((p - t) ** 2)) / denom


def image_quality(source: np.ndarray, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """All metrics of one prediction against its target; ``source`` is the radiograph with bones."""
    return {
        "mae": mae(pred, target),
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
        "ms_ssim": ms_ssim(pred, target),
        "bsr": bone_suppression_ratio(source, pred, target),
        "bsr_energy": bone_energy_removed(source, pred, target),
    }


def evaluate_pairs(
    predict: Callable[[np.ndarray], np.ndarray] | None,
    pairs: np.ndarray,
    names: Sequence[str],
    *,
    batch_size: int = 4,
) -> pd.DataFrame:
    """One row per pair: name and every metric of ``predict(source)`` against the target.

    ``predict`` maps an (B,H,W) float32 batch in [0, 1] to (B,H,W); ``None`` is the identity
    baseline. Streams over batches so a uint16 memmap never becomes float32 all at once.
    Predictions are clipped to [0, 1] (an image cannot leave the display range) before scoring.
    """
    n, h, w = check_pair_stack(pairs, "evaluate_pairs")
    names = list(names)
    if len(names) != n:
        raise CxrbsError(
            f"evaluate_pairs: {len(names)} names for {n} pairs; give one name per pair"
        )
    if int(batch_size) < 1:
        raise CxrbsError(f"batch_size must be >= 1, got {batch_size}")
    rows: list[dict[str, object]] = []
    for start in range(0, n, int(batch_size)):
        batch = as_float01(pairs[start : start + int(batch_size)])
        src, tgt = batch[:, 0], batch[:, 1]
        pred = src if predict is None else np.asarray(predict(src), dtype=np.float32)
        if pred.shape != src.shape:
            raise CxrbsError(
                f"evaluate_pairs: predict returned shape {pred.shape} "
                f"for a batch of shape {src.shape}"
            )
        pred = np.clip(pred, 0.0, 1.0)
        for k in range(src.shape[0]):
            rows.append({"name": names[start + k], **image_quality(src[k], pred[k], tgt[k])})
    return pd.DataFrame(rows, columns=["name", *METRIC_COLUMNS])


def _describe(values: np.ndarray, confidence: float) -> dict[str, float]:
    v = values[np.isfinite(values)]
    n = int(v.size)
    mean = float(np.mean(v)) if n else float("nan")
    if n < 2:
        nan = float("nan")
        return {"mean": mean, "sd": nan, "ci_low": nan, "ci_high": nan, "n": n}
    sd = float(np.std(v, ddof=1))
    from scipy import stats  # here, not at import: `cxrbs suppress` never needs it

    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def summarize(
    values: pd.DataFrame,
    by: list[str],
    *,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Long table: ``by`` columns, metric, mean, sd, ci_low, ci_high, n (t-based CI of the mean).

    ``metrics`` defaults to every numeric column not in ``by``. Non-finite values (a NaN BSR of a
    pair without bone signal) are left out and ``n`` counts the values used; n < 2 gives NaN sd/CI.
    """
    by = list(by)
    missing = [c for c in by if c not in values.columns]
    if missing:
        raise CxrbsError(f"summarize: grouping column(s) {missing} not in {list(values.columns)}")
    if metrics is None:
        metrics = [
            c
            for c in values.columns
            if c not in by
            and pd.api.types.is_numeric_dtype(values[c])
            and not pd.api.types.is_bool_dtype(values[c])
        ]
    metrics = list(metrics)
    absent = [m for m in metrics if m not in values.columns]
    if absent:
        raise CxrbsError(f"summarize: metric column(s) {absent} not in {list(values.columns)}")
    cols = [*by, "metric", "mean", "sd", "ci_low", "ci_high", "n"]
    rows: list[dict[str, object]] = []
    groups = values.groupby(by, sort=False, dropna=False) if by else [((), values)]
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            vals = pd.to_numeric(frame[m], errors="coerce").to_numpy(dtype=np.float64)
            rows.append({**dict(zip(by, key)), "metric": m, **_describe(vals, confidence)})
    return pd.DataFrame(rows, columns=cols)
