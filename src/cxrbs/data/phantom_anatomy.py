"""Anatomy, bone shadows and findings of the synthetic chest radiographs (``phantoms``).

Each function draws one layer on the unit grid of an ``Anatomy`` (x, y in [0, 1], y downwards)
in display polarity; ``phantoms`` adds the layers up. Random draws happen in a fixed order per
generator: changing that order changes every phantom, so append new draws, never insert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: A finding drawn into the soft tissue: (generator, anatomy, severity) -> additive layer.
Lesion = Callable[[np.random.Generator, "Anatomy", float], np.ndarray]


@dataclass
class Anatomy:
    """Rendered masks and per-patient geometry shared by all layers of one phantom."""

    size: int
    y: np.ndarray  # (S, 1) row coordinate in [0, 1]
    x: np.ndarray  # (1, S) column coordinate in [0, 1]
    cx: float
    apex: float
    base: float
    lat: float
    body: np.ndarray
    lungs: np.ndarray  # soft mask in [0, 1]
    heart: np.ndarray
    knob: np.ndarray  # aortic knob
    bw: np.ndarray  # (S, 1) body half-width per row


# ----------------------------------------------------------------------------- anatomy


def _sig(z: np.ndarray) -> np.ndarray:
    """A logistic step: soft-edged masks without aliasing at small sizes."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def draw_anatomy(rng: np.random.Generator, size: int) -> Anatomy:
    y = ((np.arange(size, dtype=np.float32) + 0.5) / size)[:, None]
    x = ((np.arange(size, dtype=np.float32) + 0.5) / size)[None, :]
    edge = 0.8 / size + 0.001  # mask edge width in unit coordinates
    cx = 0.5 + rng.normal(0, 0.012)
    sw = rng.uniform(0.92, 1.06)
    apex = 0.13 + rng.normal(0, 0.012)
    base = rng.uniform(0.75, 0.81)
    lat = 0.38 * sw

    shoulder, neck = 0.465 * sw, 0.09 * sw
    bw = neck + (shoulder - neck) * _smoothstep((y - 0.01) / 0.2)
    bw = bw + 0.02 * _smoothstep((y - 0.3) / 0.5)
    body = _sig((bw - np.abs(x - cx)) / edge)

    heart_c = (cx + rng.uniform(0.07, 0.1), base + rng.uniform(-0.02, 0.02))
    heart_r = (rng.uniform(0.16, 0.185) * sw, rng.uniform(0.21, 0.25))
    heart = _ellipse(x, y, heart_c, heart_r, edge)
    knob = _ellipse(x, y, (cx + 0.045, apex + 0.17), (0.035, 0.03), edge)
    lungs: np.ndarray = np.zeros((size, size), np.float32)
    for side, drop in ((-1, -0.012), (1, 0.012)):  # patient's right hemidiaphragm sits higher
        lungs = np.maximum(lungs, _lung(x, y, cx, side, apex, base + drop, lat, edge, rng))
    lungs = lungs * (1.0 - heart) * (1.0 - knob)
    return Anatomy(size, y, x, cx, apex, base, lat, body, lungs, heart, knob, bw)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(
    x: np.ndarray, y: np.ndarray, c: tuple[float, float], r: tuple[float, float], edge: float
) -> np.ndarray:
    rho = np.sqrt(((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2)
    return _sig((1.0 - rho) * min(r) / edge)


def _lung(
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    side: int,
    apex: float,
    base: float,
    lat: float,
    edge: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One lung field: rounded apex, bulging lateral wall, domed base, sharp costophrenic angle."""
    u = side * (x - cx)  # distance from the midline towards this lung's lateral wall
    lat = lat * rng.uniform(0.96, 1.04)
    med = rng.uniform(0.06, 0.075)
    u_apex = rng.uniform(0.15, 0.19)
    mid = apex + rng.uniform(0.24, 0.3)
    t = np.clip((y - apex) / (mid - apex), 0.0, 1.0)
    round_ = np.sqrt(1.0 - (1.0 - t) ** 2)
    lateral = u_apex + (lat - u_apex) * round_ + 0.02 * np.clip((y - mid) / (base - mid), 0, 1)
    medial = u_apex - (u_apex - med) * np.sqrt(np.clip(1.0 - (1.0 - 1.6 * t) ** 2, 0, 1))
    medial = np.where(t > 0.625, med, medial)
    dome = rng.uniform(0.05, 0.08)
    u_dome = rng.uniform(0.13, 0.18)
    top_dia = base - dome * np.clip(1.0 - ((u - u_dome) / (lat - u_dome + 0.02)) ** 2, 0, 1)
    inside = (
        _sig((u - medial) / edge)
        * _sig((lateral - u) / edge)
        * _sig((y - apex + 0.004) / edge)
        * _sig((top_dia - y) / edge)
    )
    return inside.astype(np.float32)


# ----------------------------------------------------------------------------- soft tissue


def soft_tissue_layer(
    anat: Anatomy, rng: np.random.Generator, tex_rng: np.random.Generator
) -> np.ndarray:
    x, y, cx, s = anat.x, anat.y, anat.cx, anat.size
    bw = anat.bw
    thick = np.sqrt(np.clip(1.0 - ((x - cx) / bw) ** 2, 0.0, 1.0))
    soft = 0.06 + anat.body * (0.3 + 0.47 * thick**0.8)
    medi_w = (0.065 + 0.03 * _smoothstep((y - anat.apex - 0.1) / 0.3)) * rng.uniform(0.9, 1.1)
    medi = np.exp(-(((x - cx) / medi_w) ** 4)) * _sig((y - 0.05) / 0.03)
    below = _sig((y - anat.base + 0.02) / 0.03)
    dense = np.maximum(np.maximum(medi, anat.heart), np.maximum(below, anat.knob))
    soft = soft + 0.13 * dense * anat.body
    trachea = np.exp(-(((x - cx) / 0.015) ** 4)) * _sig((anat.apex + 0.2 - y) / 0.01)
    soft = soft - 0.1 * trachea * anat.body
    for side in (-1, 1):  # hilar vessels and lymph nodes
        soft = soft + 0.05 * _blob(anat, anat.apex + 0.28, cx + side * 0.1, 0.03)
    bubble = _ellipse(x, y, (cx + 0.17, anat.base + 0.05), (0.05, 0.028), 1.5 / s + 0.004)
    soft = soft - rng.uniform(0.05, 0.15) * bubble * (1.0 - anat.lungs)

    depth = _blur_coarse(anat.lungs, 0.035 * s)
    lung_dark = anat.lungs * (0.4 + 0.6 * depth)
    lung_dark = lung_dark * (1.0 - 0.3 * _smoothstep((y - 0.45) / 0.35))
    lung_dark = lung_dark * (1.0 - 0.25 * _smoothstep((anat.apex + 0.1 - y) / 0.1))
    soft = soft - rng.uniform(0.38, 0.5) * lung_dark

    texture = _smooth_noise(tex_rng, s, 12) * 0.035 + _smooth_noise(tex_rng, s, 40) * 0.015
    soft = soft + texture * anat.lungs
    soft = soft + rng.uniform(0.06, 0.1) * _vessels(tex_rng, anat) * anat.lungs

    gamma = rng.uniform(0.85, 1.15)
    soft = np.clip(soft, 0.0, 1.0) ** gamma * rng.uniform(0.92, 1.0)
    return soft.astype(np.float32)


def _blur_coarse(img: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur done at quarter resolution (wide blurs lose nothing there)."""
    f = 4 if img.shape[0] >= 128 else 1
    small = ndimage.gaussian_filter(img[::f, ::f], sigma / f, mode="constant")
    small = small / max(float(small.max()), 1e-6)
    if f == 1:
        return small
    pos = np.arange(img.shape[0]) / f  # small pixel j is full pixel f*j
    return ndimage.map_coordinates(small, np.meshgrid(pos, pos, indexing="ij"), order=1,
                                   mode="nearest")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Unit-variance low-frequency noise with about ``cells`` blobs across the image.

    A coarse random grid is upsampled cubically to a quarter of the size, then bilinearly:
    smooth enough for texture, and a few times faster than one cubic zoom to full size.
    """
    coarse = rng.standard_normal((cells + 4, cells + 4)).astype(np.float32)
    return _upsample(coarse, size, pad=2, cells=cells)


def _upsample(coarse: np.ndarray, size: int, *, pad: int, cells: int) -> np.ndarray:
    """Resample the central ``cells`` of a padded grid to (size, size), normalised."""
    mid_n = max(size // 4, cells)
    pos = pad - 0.5 + (np.arange(mid_n) + 0.5) * cells / mid_n
    mid = ndimage.map_coordinates(
        coarse, np.meshgrid(pos, pos, indexing="ij"), order=3, mode="nearest"
    )
    pos = (np.arange(size) + 0.5) * mid_n / size - 0.5
    fine = ndimage.map_coordinates(mid, np.meshgrid(pos, pos, indexing="ij"), order=1,
                                   mode="nearest")
    return (fine - fine.mean()) / (fine.std() + 1e-6)


def _vessels(rng: np.random.Generator, anat: Anatomy) -> np.ndarray:
    """Branching vessel trees from both hila, thinning and fading towards the periphery.

    Grown one generation at a time on arrays of segments (no per-segment Python calls), then
    splatted as points along each segment and blurred into soft lines.
    """
    s = anat.size
    starts, angles = [], []
    for side in (-1, 1):
        n = int(rng.integers(8, 12))
        lo, hi = (-80, 170) if side > 0 else (10, 260)
        starts.append(np.tile([anat.apex + 0.3, anat.cx + side * 0.1], (n, 1)))
        angles.append(np.deg2rad(rng.uniform(lo, hi, n)))
    p0 = np.concatenate(starts) * s
    ang = np.concatenate(angles)
    length = np.full(ang.size, 0.05 * s)
    weight = np.ones(ang.size)
    segs = []
    for _ in range(6):
        p1 = p0 + length[:, None] * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        segs.append((p0, p1, weight))
        parent = np.repeat(np.arange(ang.size), np.where(rng.random(ang.size) < 0.7, 2, 1))
        p0, weight = p1[parent], weight[parent] * 0.72
        ang = ang[parent] + rng.normal(0, 0.4, parent.size)
        length = length[parent] * rng.uniform(0.65, 0.85, parent.size)
    a, b, w = (np.concatenate(parts) for parts in zip(*segs, strict=True))
    steps = int(np.ceil(0.05 * s)) + 2
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    pts = np.rint(a[:, None, :] + t * (b - a)[:, None, :]).astype(np.intp).reshape(-1, 2)
    vals = np.repeat(w, steps)
    ok = np.all((pts >= 0) & (pts < s), axis=1)
    canvas = np.zeros((s, s), np.float32)
    np.maximum.at(canvas, (pts[ok, 0], pts[ok, 1]), vals[ok])
    canvas = ndimage.gaussian_filter(canvas, max(0.6, s / 300))
    peak = float(np.quantile(canvas[canvas > 0], 0.98)) if np.any(canvas > 0) else 1.0
    return np.clip(canvas / max(peak, 1e-6), 0.0, 1.0)


# ----------------------------------------------------------------------------- bones


def bone_shadows(anat: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All bone shadows (positive): the cage (ribs, scapulae, spine) and the clavicles."""
    s, x, y = anat.size, anat.x, anat.y
    bones = np.zeros((s, s), np.float32)
    clavicles = np.zeros((s, s), np.float32)
    density = rng.uniform(0.8, 1.2)
    spacing = rng.uniform(0.056, 0.064)
    for side in (-1, 1):
        u = side * (x - anat.cx)
        y0 = anat.apex - 0.035 + rng.normal(0, 0.005)
        for k in range(10):
            half = (0.011 + 0.0009 * k) * rng.uniform(0.9, 1.1)
            drop = (0.17 + 0.008 * k) * rng.uniform(0.9, 1.1)
            _add_rib(bones, anat, u, y0, drop, half, 0.08 * density, anterior=False)
            if k < 6:
                _add_rib(bones, anat, u, y0 + 0.56 * drop, 0.11 + 0.005 * k, half * 0.8,
                         0.04 * density, anterior=True)
            y0 += spacing * (1.0 + 0.035 * k) + rng.normal(0, 0.003)
        _add_clavicle(clavicles, anat, u, 0.13 * density, rng)
        _add_scapula(bones, anat, u, 0.03 * density, rng)
    spine = np.exp(-(((x - anat.cx) / 0.035) ** 6)) * _sig((y - anat.apex + 0.05) / 0.01)
    discs = 0.75 + 0.25 * np.cos(2 * np.pi * (y - anat.apex) / (spacing * 1.05)) ** 8
    bones += (0.06 * density * spine * discs * anat.body).astype(np.float32)
    return bones * anat.body, clavicles * anat.body


def _rows(anat: Anatomy, lo: float, hi: float) -> slice:
    s = anat.size
    return slice(max(0, int(np.floor(lo * s))), min(s, int(np.ceil(hi * s)) + 1))


def _add_rib(
    bones: np.ndarray,
    anat: Anatomy,
    u: np.ndarray,
    y0: float,
    drop: float,
    half: float,
    amp: float,
    *,
    anterior: bool,
) -> None:
    """Add one rib band: bright cortical edges around a fainter marrow, tapering at its ends.

    Posterior ribs rise a little from the spine, then arch down laterally; anterior ribs run from
    the lateral wall down towards the sternum and fade where cartilage takes over.
    """
    rows = _rows(anat, y0 - 0.17 * drop - half, y0 + 1.3 * drop + half)
    if rows.start >= rows.stop:
        return
    yy = anat.y[rows]
    t = np.clip(u / (anat.lat * 1.05), 0.0, 1.15)
    if anterior:
        centre = y0 + drop * (1.0 - np.minimum(t, 1.0)) ** 1.3
        along = _sig((t - 0.35) / 0.05) * _sig((1.08 - t) / 0.02)
    else:
        centre = y0 + drop * ((t - 0.4) ** 2 - 0.16 + 4.0 * np.maximum(t - 0.7, 0) ** 2)
        along = _sig((u - 0.035) / 0.008) * _sig((1.1 - t) / 0.02)
    d = np.abs(yy - centre) / half
    core = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    cortex = np.exp(-(((d - 0.85) / 0.17) ** 2))
    profile = (0.65 * core + 0.35 * cortex) if not anterior else (0.8 * core + 0.2 * cortex)
    bones[rows] += (amp * profile * along).astype(np.float32)


def _add_clavicle(
    bones: np.ndarray, anat: Anatomy, u: np.ndarray, amp: float, rng: np.random.Generator
) -> None:
    """A clavicle from the sternal notch out and up to the shoulder, with a gentle S-curve."""
    y_sternal = anat.apex + rng.uniform(0.05, 0.08)
    y_acrom = anat.apex - rng.uniform(0.0, 0.03)
    rows = _rows(anat, y_acrom - 0.05, y_sternal + 0.05)
    yy = anat.y[rows]
    t = np.clip((u - 0.03) / 0.4, 0.0, 1.0)
    centre = y_sternal + (y_acrom - y_sternal) * t + 0.012 * np.sin(2 * np.pi * t)
    half = 0.016 * (1.0 + 0.3 * (1.0 - t))
    d = np.abs(yy - centre) / half
    core = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0))
    cortex = np.exp(-(((d - 0.85) / 0.17) ** 2))
    along = _sig((u - 0.045) / 0.006) * _sig((0.44 - u) / 0.01)
    bones[rows] += (amp * (0.6 * core + 0.4 * cortex) * along).astype(np.float32)


def _add_scapula(
    bones: np.ndarray, anat: Anatomy, u: np.ndarray, amp: float, rng: np.random.Generator
) -> None:
    """The faint medial border of a scapula, a thin arc over the upper lateral lung."""
    top, bottom = anat.apex + 0.02, anat.apex + rng.uniform(0.3, 0.36)
    rows = _rows(anat, top, bottom)
    yy = anat.y[rows]
    t = np.clip((yy - top) / (bottom - top), 0.0, 1.0)
    u_border = anat.lat - 0.03 - 0.06 * np.sin(np.pi * t) * rng.uniform(0.6, 1.0)
    width = 0.006
    taper = np.sqrt(np.clip(np.sin(np.pi * t), 0.0, 1.0))
    line = np.exp(-(((u - u_border) / width) ** 2)) * taper
    plate = _sig((u - u_border) / 0.004) * taper * 0.35
    bones[rows] += (amp * (line + plate)).astype(np.float32)


# ----------------------------------------------------------------------------- findings


def _blob(anat: Anatomy, cy: float, cx: float, sigma: float) -> np.ndarray:
    """A separable Gaussian blob: one outer product, cheap at any size."""
    gy = np.exp(-0.5 * ((anat.y[:, 0] - cy) / sigma) ** 2)
    gx = np.exp(-0.5 * ((anat.x[0, :] - cx) / sigma) ** 2)
    return np.outer(gy, gx).astype(np.float32)


def _pick_points(
    rng: np.random.Generator, weight: np.ndarray, n: int
) -> list[tuple[float, float]]:
    """Draw n (y, x) unit positions with probability proportional to ``weight``."""
    flat = weight.ravel().astype(np.float64)
    total = flat.sum()
    if total <= 0:
        return []
    idx = rng.choice(flat.size, size=n, p=flat / total)
    s = weight.shape[0]
    return [((i // s + 0.5) / s, (i % s + 0.5) / s) for i in idx]


def tb_opacities(rng: np.random.Generator, anat: Anatomy, severity: float) -> np.ndarray:
    """Patchy upper-lobe opacities in one or both lungs, sometimes with a cavity ring."""
    y, x = anat.y, anat.x
    upper = anat.lungs * _sig((anat.apex + 0.27 - y) / 0.02)
    sides = [-1, 1] if rng.random() < 0.4 else [int(rng.choice([-1, 1]))]
    out = np.zeros_like(anat.lungs)
    for side in sides:
        zone = upper * _sig(side * (x - anat.cx) / 0.01)
        n = 3 + int(round(4 * min(severity, 2.0)))
        for cy, cxp in _pick_points(rng, zone, n):
            sigma = rng.uniform(0.01, 0.03)
            out += rng.uniform(0.1, 0.2) * _blob(anat, cy, cxp, sigma)
            for _ in range(2):  # satellite nodules make the patch fluffy rather than round
                oy, ox = rng.normal(0, 1.5 * sigma, size=2)
                out += rng.uniform(0.03, 0.08) * _blob(anat, cy + oy, cxp + ox, 0.5 * sigma)
        if rng.random() < 0.35:
            (cy, cxp), = _pick_points(rng, zone, 1)
            radius = rng.uniform(0.018, 0.03)
            rho = np.sqrt((y - cy) ** 2 + (x - cxp) ** 2)
            ring = np.exp(-0.5 * ((rho - radius) / (0.3 * radius)) ** 2)
            hole = np.exp(-0.5 * (rho / (0.6 * radius)) ** 2)
            out += 0.13 * ring - 0.05 * hole
    patchy = 0.65 + 0.35 * _sig(2.0 * _smooth_noise(rng, anat.size, 24))
    return severity * out * patchy * np.clip(anat.lungs * 1.2, 0, 1)


def consolidation(rng: np.random.Generator, anat: Anatomy, severity: float) -> np.ndarray:
    """Pneumonia-like consolidation anywhere in the lungs, most often the lower lobes."""
    y = anat.y
    lower = 0.3 + _sig((y - anat.apex - 0.3) / 0.05)
    out = np.zeros_like(anat.lungs)
    for cy, cxp in _pick_points(rng, anat.lungs * lower, int(rng.integers(1, 4))):
        for _ in range(4):  # a cluster of overlapping blobs looks patchier than one
            oy, ox = rng.normal(0, 0.025, size=2)
            sigma = rng.uniform(0.025, 0.06)
            out += rng.uniform(0.05, 0.1) * _blob(anat, cy + oy, cxp + ox, sigma)
    patchy = 0.6 + 0.4 * _sig(2.0 * _smooth_noise(rng, anat.size, 20))
    return severity * out * patchy * np.clip(anat.lungs * 1.2, 0, 1)


# ----------------------------------------------------------------------------- noise, output
