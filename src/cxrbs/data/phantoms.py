"""Synthetic PA chest radiographs, so the whole workflow runs offline without real data.

A phantom is a soft-tissue layer plus an additive bone layer plus one shared noise field: the
radiograph is ``soft + bones + noise`` and its bone-suppressed counterpart ``soft + noise``, so
a pair differs by the bone layer only, like a BSE-JSRT source/target pair. As in BSE-JSRT,
the bone layer holds the bone shadows over the lung fields only (ribs, clavicles, scapular
edges); shadows outside them (spine, chest-wall ribs, clavicle ends) stay in ``soft`` and are
kept separately in ``outer_bones`` because dual-energy soft-tissue images remove those too.

Geometry is in unit coordinates (x, y in [0, 1], y downwards) so every size looks alike;
display polarity throughout (air and lungs dark, bone bright).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cxrbs.core.atomic import ensure_dir
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png

PHANTOM_KINDS: tuple[str, ...] = ("pairs", "des", "shenzhen", "montgomery", "cxr8")

_MIN_SIZE = 32
_Lesion = Callable[[np.random.Generator, "_Anatomy", float], np.ndarray]


@dataclass
class Phantom:
    """The layers of one synthetic radiograph (all float32, same shape)."""

    soft: np.ndarray
    bones: np.ndarray
    noise: np.ndarray
    #: bone shadows outside the lungs, already inside ``soft`` (BSE-JSRT keeps them)
    outer_bones: np.ndarray | None = None
    #: the lung fields the phantom was drawn with, in [0, 1]: ground truth for checks and metrics
    lungs: np.ndarray | None = None

    @property
    def radiograph(self) -> np.ndarray:
        return _clip01(self.soft + self.bones + self.noise)

    @property
    def soft_tissue(self) -> np.ndarray:
        """The BSE-JSRT-style target: the radiograph without the bone layer, same noise."""
        return _clip01(self.soft + self.noise)

    @property
    def dual_energy(self) -> np.ndarray:
        """A dual-energy-style soft-tissue image: every bone removed, global contrast flattened.

        Differs in style from ``soft_tissue`` on purpose, so a model trained on BSE-style pairs
        meets a cross-institution shift, as with real DES test sets.
        """
        outer = 0.0 if self.outer_bones is None else self.outer_bones
        return _flatten_contrast(_clip01(self.soft - outer + self.noise))


@dataclass
class _Anatomy:
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


def make_phantom(
    rng: np.random.Generator, size: int = 256, *, tb: bool = False, tb_severity: float = 1.0
) -> Phantom:
    """One synthetic PA chest radiograph; ``tb`` adds upper-lobe opacities to the soft tissue.

    The anatomy, texture and noise come from their own child generators, so the same seed with
    and without ``tb`` gives the same patient and differs only by the opacities.
    """
    if tb_severity < 0 or not np.isfinite(tb_severity):
        raise CxrbsError(f"tb_severity must be a finite number >= 0, got {tb_severity}")
    return _phantom(rng, size, _tb_opacities if tb else None, tb_severity)


def _phantom(
    rng: np.random.Generator, size: int, lesion: _Lesion | None, severity: float
) -> Phantom:
    # child generators from drawn seeds (Generator.spawn needs numpy >= 1.25; we allow 1.24)
    anat_rng, tex_rng, noise_rng, lesion_rng = (
        np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=4)
    )
    return _phantom_from(anat_rng, tex_rng, noise_rng, lesion_rng, size, lesion, severity)


def _phantom_from(
    anat_rng: np.random.Generator,
    tex_rng: np.random.Generator,
    noise_rng: np.random.Generator,
    lesion_rng: np.random.Generator,
    size: int,
    lesion: _Lesion | None,
    severity: float,
) -> Phantom:
    if int(size) != size or size < _MIN_SIZE:
        raise CxrbsError(f"phantom size must be an integer >= {_MIN_SIZE}, got {size}")
    size = int(size)
    anat = _anatomy(anat_rng, size)
    soft = _soft_tissue(anat, anat_rng, tex_rng)
    cage, clavicles = _bone_shadows(anat, anat_rng)
    bones = (cage + clavicles) * anat.lungs
    # outside the lungs thick soft tissue lowers rib contrast; clavicles stay conspicuous
    outer = (0.5 * cage + 0.9 * clavicles) * (1.0 - anat.lungs)
    soft = soft + outer
    if lesion is not None and severity > 0:
        soft = soft + lesion(lesion_rng, anat, severity)
    noise = _quantum_noise(noise_rng, size)
    return Phantom(
        soft=soft.astype(np.float32),
        bones=bones.astype(np.float32),
        noise=noise.astype(np.float32),
        outer_bones=outer.astype(np.float32),
        lungs=anat.lungs.astype(np.float32),
    )


# ----------------------------------------------------------------------------- anatomy


def _sig(z: np.ndarray) -> np.ndarray:
    """A logistic step: soft-edged masks without aliasing at small sizes."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
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
    lungs = np.zeros((size, size), np.float32)
    for side, drop in ((-1, -0.012), (1, 0.012)):  # patient's right hemidiaphragm sits higher
        lungs = np.maximum(lungs, _lung(x, y, cx, side, apex, base + drop, lat, edge, rng))
    lungs = lungs * (1.0 - heart) * (1.0 - knob)
    return _Anatomy(size, y, x, cx, apex, base, lat, body, lungs, heart, knob, bw)


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


def _soft_tissue(
    anat: _Anatomy, rng: np.random.Generator, tex_rng: np.random.Generator
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


def _vessels(rng: np.random.Generator, anat: _Anatomy) -> np.ndarray:
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


def _bone_shadows(anat: _Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _rows(anat: _Anatomy, lo: float, hi: float) -> slice:
    s = anat.size
    return slice(max(0, int(np.floor(lo * s))), min(s, int(np.ceil(hi * s)) + 1))


def _add_rib(
    bones: np.ndarray,
    anat: _Anatomy,
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
    bones: np.ndarray, anat: _Anatomy, u: np.ndarray, amp: float, rng: np.random.Generator
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
    bones: np.ndarray, anat: _Anatomy, u: np.ndarray, amp: float, rng: np.random.Generator
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


def _blob(anat: _Anatomy, cy: float, cx: float, sigma: float) -> np.ndarray:
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


def _tb_opacities(rng: np.random.Generator, anat: _Anatomy, severity: float) -> np.ndarray:
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


def _consolidation(rng: np.random.Generator, anat: _Anatomy, severity: float) -> np.ndarray:
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


def _quantum_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    sigma = rng.uniform(0.006, 0.012)
    white = rng.standard_normal((size, size)).astype(np.float32)
    grain = ndimage.gaussian_filter(white, 0.5 * size / 256 + 0.3)
    return grain * (sigma / (float(grain.std()) + 1e-6))


def _clip01(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _flatten_contrast(img: np.ndarray) -> np.ndarray:
    """Dual-energy soft-tissue style: compressed dynamic range around a lifted mean."""
    return _clip01(0.12 + 0.78 * img**0.85)


def _save_png(path: Path, img01: np.ndarray) -> None:
    """8-bit PNG like the public sets ship, written atomically by the package's one PNG writer."""
    write_png(path, img01, bits=8)


# ----------------------------------------------------------------------------- layouts


def write_layout(kind: str, outdir: Path, n: int, *, size: int = 256, seed: int = 0,
                 severity: float = 1.0) -> Path:
    """Write ``n`` synthetic images in the file layout of a real public data set.

    ``severity`` scales the findings of labelled sets: small demo images need stronger
    opacities than 256-pixel ones for a classifier to have something to learn in a few epochs.

    Layouts: "pairs" (BSE-JSRT ``source/`` and ``target/``), "des" (dual-energy pairs from
    another institution), "shenzhen" and "montgomery" (``*_L.png``, L = 1 TB) and "cxr8"
    (``normal/`` and ``abnormal/``, ``PPPPPPPP_FFF.png`` with follow-ups per patient).
    """
    if kind not in PHANTOM_KINDS:
        raise CxrbsError(
            f"unknown phantom kind {kind!r}: use one of {', '.join(PHANTOM_KINDS)}"
        )
    if int(n) != n or n < 1:
        raise CxrbsError(f"number of phantom images n must be a positive integer, got {n}")
    if int(size) != size or size < _MIN_SIZE:
        raise CxrbsError(f"phantom size must be an integer >= {_MIN_SIZE}, got {size}")
    if int(seed) != seed or seed < 0:
        raise CxrbsError(f"phantom seed must be a non-negative integer, got {seed}")
    if not np.isfinite(severity) or severity < 0:
        raise CxrbsError(f"phantom severity must be a finite number >= 0, got {severity}")
    outdir = ensure_dir(outdir)
    root = np.random.SeedSequence([int(seed), PHANTOM_KINDS.index(kind)])
    writer = {
        "pairs": _write_pairs,
        "des": _write_pairs,
        "shenzhen": _write_tb,
        "montgomery": _write_tb,
        "cxr8": _write_cxr8,
    }[kind]
    writer(kind, outdir, int(n), int(size), root, float(severity))
    return outdir


def _write_pairs(kind: str, outdir: Path, n: int, size: int, root: np.random.SeedSequence,
                 scale: float = 1.0) -> None:
    for i, child in enumerate(root.spawn(n), start=1):
        ph = _phantom(np.random.default_rng(child), size, None, 0.0)
        if kind == "pairs":
            name, target = f"JPCNN{i:03d}.png", ph.soft_tissue
        else:
            name, target = f"SZCH_{i:04d}.png", ph.dual_energy
        _save_png(outdir / "source" / name, ph.radiograph)
        _save_png(outdir / "target" / name, target)


def _write_tb(kind: str, outdir: Path, n: int, size: int, root: np.random.SeedSequence,
              scale: float = 1.0) -> None:
    prefix, tb_share = ("CHNCXR", 0.5) if kind == "shenzhen" else ("MCUCXR", 0.4)
    label_rng, *children = (np.random.default_rng(c) for c in root.spawn(n + 1))
    labels = np.zeros(n, dtype=int)
    labels[: int(round(tb_share * n))] = 1
    labels = label_rng.permutation(labels)
    for i, (rng, label) in enumerate(zip(children, labels, strict=True), start=1):
        severity = float(rng.uniform(0.6, 1.4))
        ph = _phantom(rng, size, _tb_opacities if label else None, severity * scale)
        _save_png(outdir / f"{prefix}_{i:04d}_{label}.png", ph.radiograph)


def _write_cxr8(kind: str, outdir: Path, n: int, size: int, root: np.random.SeedSequence,
                scale: float = 1.0) -> None:
    """Patients with 1-3 follow-ups: same anatomy per patient, new noise and findings per image."""
    plan_rng = np.random.default_rng(root.spawn(1)[0])
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(int(plan_rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])))
    counts[-1] -= sum(counts) - n
    if n >= 2 and max(counts) < 2:  # keep the patient-grouping case present in small sets
        counts = [2] + counts[2:]
    ids = np.sort(plan_rng.choice(np.arange(1, 30_000), size=len(counts), replace=False))
    # labels mostly follow the patient, as in ChestX-ray8, where some patients are in both classes
    sick = plan_rng.random(len(counts)) < 0.5
    labels = [
        [bool(s) if plan_rng.random() > 0.15 else not s for _ in range(c)]
        for s, c in zip(sick, counts, strict=True)
    ]
    flat = [lab for per in labels for lab in per]
    if n >= 2 and len(set(flat)) == 1:  # both classes, or a classifier has nothing to learn
        labels[-1][-1] = not labels[-1][-1]
    for pid, pseq, per in zip(ids, root.spawn(len(counts)), labels, strict=True):
        anat_seq, tex_seq, *image_seqs = pseq.spawn(len(per) + 2)
        for follow, (iseq, label) in enumerate(zip(image_seqs, per, strict=True)):
            noise, lesion = (np.random.default_rng(c) for c in iseq.spawn(2))
            ph = _phantom_from(
                np.random.default_rng(anat_seq), np.random.default_rng(tex_seq), noise, lesion,
                size, _consolidation if label else None, float(lesion.uniform(0.7, 1.5)) * scale,
            )
            folder = "abnormal" if label else "normal"
            _save_png(outdir / folder / f"{pid:08d}_{follow:03d}.png", ph.radiograph)
