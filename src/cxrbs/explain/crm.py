"""Class-selective relevance maps (CRM), Grad-CAM, heat-map overlays and box-based localisation.

CRM (Kim, Rajaraman & Antani, Diagnostics 2019): for each location (x, y) of the deepest conv
feature maps, zero the C-vector there and measure how much every output score moves:
``CRM(x, y) = sum_k (S_k - S_k(x, y))**2``. Summing squared changes over *all* classes counts
locations that argue against a class as well as those that argue for it, unlike CAM/Grad-CAM.

Models are expected to expose ``forward_features(x) -> (N, C, h, w)`` and
``forward_head(f) -> (N, K)`` (global average pooling, dropout, ``fc``), like ``cxrbs.models``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.explain.overlay import Box, overlay  # noqa: F401 - overlay: re-exported

SCORES = ("logit", "softmax")
BOX_COLUMNS = ("image", "x", "y", "w", "h")
# Bound on elements of one batch of masked feature tensors (~64 MiB in float32).
_MAX_BATCH_ELEMENTS = 1 << 24


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run with dropout/batch-norm in inference mode, then restore every submodule's own flag.

    ``model.train(previous)`` alone would wipe deliberately mixed modes (e.g. frozen batch norm).
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def _check_input(x: Tensor) -> None:
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image as a (1, C, H, W) tensor, got shape {tuple(x.shape)}")


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


def _features(model: nn.Module, x: Tensor) -> Tensor:
    device, dtype = _model_device_dtype(model)
    net: Any = model  # a ClassifierModel: forward_features / forward_head (duck-typed in tests)
    return net.forward_features(x.to(device=device, dtype=dtype))


def _scores(model: nn.Module, feats: Tensor, score: str) -> Tensor:
    net: Any = model
    logits = net.forward_head(feats)
    return torch.softmax(logits, dim=1) if score == "softmax" else logits


# ---------------------------------------------------------------------------------------------
# CRM
# ---------------------------------------------------------------------------------------------
def crm_bruteforce(model: nn.Module, x: Tensor, *, score: str = "logit") -> np.ndarray:
    """Reference CRM, unnormalised (h, w): literally zero each location and rerun the head.

    Slow (one head pass per location); kept as the definition the fast paths are tested against.
    """
    _check_input(x)
    _check_score(score)
    with eval_mode(model), torch.no_grad():
        feats = _features(model, x)
        base = _scores(model, feats, score)[0]
        _, _, h, w = feats.shape
        out = np.zeros((h, w), dtype=np.float64)
        for i in range(h):
            for j in range(w):
                masked = feats.clone()
                masked[:, :, i, j] = 0
                diff = base - _scores(model, masked, score)[0]
                out[i, j] = float((diff.double() ** 2).sum())
    return out


def _is_gap_linear_head(model: nn.Module, feats: Tensor) -> bool:
    """True when forward_head(f) == fc(mean f), the case where the logit CRM has a closed form."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear) or fc.in_features != feats.shape[1]:
        return False
    expected = fc(feats.mean(dim=(2, 3)))
    net: Any = model
    actual = net.forward_head(feats)
    if actual.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) + 1.0
    return bool((actual - expected).abs().max() <= 1e-5 * scale)


def _crm_closed_form(fc: nn.Linear, feats: Tensor) -> Tensor:
    """Removing location (x,y) lowers logit k by sum_c w_kc f_c(x,y) / (h*w): all at once."""
    _, _, h, w = feats.shape
    weight = fc.weight.detach().double()  # (K, C)
    delta = torch.einsum("kc,chw->khw", weight, feats[0].double()) / (h * w)
    return (delta**2).sum(dim=0)


def _crm_batched(model: nn.Module, feats: Tensor, score: str) -> Tensor:
    """Any head: one batched head pass over h*w copies, copy i with location i zeroed."""
    _, c, h, w = feats.shape
    n_loc = h * w
    base = _scores(model, feats, score)  # (1, K)
    chunk = max(1, _MAX_BATCH_ELEMENTS // (c * n_loc))
    out = torch.empty(n_loc, dtype=torch.float64, device=feats.device)
    for start in range(0, n_loc, chunk):
        idx = torch.arange(start, min(start + chunk, n_loc), device=feats.device)
        mask = torch.ones(len(idx), n_loc, dtype=feats.dtype, device=feats.device)
        mask[torch.arange(len(idx), device=feats.device), idx] = 0
        batch = feats * mask.view(len(idx), 1, h, w)
        diff = base - _scores(model, batch, score)
        out[idx] = (diff.double() ** 2).sum(dim=1)
    return out.view(h, w)


def crm_raw(model: nn.Module, x: Tensor, score: str = "logit") -> np.ndarray:
    """Unnormalised CRM (h, w), equal to :func:`crm_bruteforce` but without the per-location loop.

    Logit scores with a GAP + linear head use the closed form; anything else (softmax scores,
    other heads) falls back to one batched head pass. Dropout is off during the call.
    """
    _check_input(x)
    _check_score(score)
    with eval_mode(model), torch.no_grad():
        feats = _features(model, x)
        if score == "logit" and _is_gap_linear_head(model, feats):
            crm = _crm_closed_form(getattr(model, "fc"), feats)
        else:
            crm = _crm_batched(model, feats, score)
    return crm.cpu().numpy().astype(np.float64)


def resize_image(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float64))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _normalise_max(arr: np.ndarray) -> np.ndarray:
    """Divide by the maximum; an all-zero (or non-positive) map stays zero instead of NaN."""
    peak = float(arr.max()) if arr.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros_like(arr, dtype=np.float64)
    return np.clip(arr / peak, 0.0, 1.0)


def class_selective_relevance_map(
    model: nn.Module,
    x: Tensor,
    *,
    score: str = "logit",
    threshold: float = 0.1,
    out_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """CRM resized (bilinear) to ``out_size`` (default: the input's H, W), max 1, < threshold -> 0.

    The map is normalised *after* resizing so its peak is exactly 1 whatever the scale factor.
    """
    raw = crm_raw(model, x, score)
    size = ((int(out_size[0]), int(out_size[1])) if out_size is not None
            else (int(x.shape[-2]), int(x.shape[-1])))
    crm = _normalise_max(resize_image(raw, size))
    crm[crm < threshold] = 0.0
    return crm


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------
def grad_cam_raw(model: nn.Module, x: Tensor, target_class: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at feature resolution (h, w), before normalisation."""
    _check_input(x)
    with eval_mode(model):
        with torch.no_grad():
            feats = _features(model, x)
        feats = feats.detach().requires_grad_(True)
        net: Any = model
        logits = net.forward_head(feats)
        if not 0 <= target_class < logits.shape[1]:
            raise ValueError(f"target_class {target_class} outside 0..{logits.shape[1] - 1}")
        (grads,) = torch.autograd.grad(logits[0, target_class], feats)
    weights = grads[0].mean(dim=(1, 2))  # (C,)
    cam = torch.relu(torch.einsum("c,chw->hw", weights.double(), feats[0].detach().double()))
    return cam.cpu().numpy()


def grad_cam(model: nn.Module, x: Tensor, target_class: int) -> np.ndarray:
    """Grad-CAM scaled to [0, 1] (divided by its max) and upsampled bilinearly to the input size."""
    raw = grad_cam_raw(model, x, target_class)
    return _normalise_max(resize_image(raw, (int(x.shape[-2]), int(x.shape[-1]))))


# ---------------------------------------------------------------------------------------------
# display and localisation
# ---------------------------------------------------------------------------------------------
def _box_mask(shape: tuple[int, int], boxes: list[Box]) -> np.ndarray:
    """Union of (x, y, w, h) boxes as a boolean mask; every pixel a box touches counts."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = True
    return mask


def mass_inside_boxes(heatmap: np.ndarray, boxes: list[Box]) -> float:
    """Fraction of the map's total mass inside the union of boxes (heatmap pixel coordinates).

    NaN for an all-zero map: "no relevance anywhere" is neither a hit nor a miss.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    if (heat < 0).any():
        raise ValueError("heatmap has negative values; relevance mass must be non-negative")
    total = float(heat.sum())
    if total <= 0:
        return math.nan
    return float(heat[_box_mask(heat.shape, boxes)].sum() / total)


def read_boxes_csv(path: str | os.PathLike[str]) -> dict[str, list[Box]]:
    """Read expert boxes: columns image, x, y, w, h; several rows per image give several boxes."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in BOX_COLUMNS if c not in header]
            if missing:
                raise CxrbsError(
                    f"box file {path} lacks column(s) {', '.join(missing)}: "
                    f"it needs the header {','.join(BOX_COLUMNS)}"
                )
            rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise CxrbsError(f"cannot read box file {path}: {exc.strerror or exc}") from exc
    boxes: dict[str, list[Box]] = {}
    for line, row in enumerate(rows, start=2):
        boxes.setdefault(str(row["image"]).strip(), []).append(_parse_box(path, line, row))
    return boxes


def _parse_box(path: Path, line: int, row: dict[str, str]) -> Box:
    try:
        x, y, w, h = (float(row[c]) for c in ("x", "y", "w", "h"))
    except (TypeError, ValueError) as exc:
        raise CxrbsError(f"box file {path} line {line}: x, y, w, h must be numbers") from exc
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise CxrbsError(
            f"box file {path} line {line}: need finite x, y and non-negative w, h; fix the row"
        )
    return (x, y, w, h)
