"""Synthetic data sets in the file layouts of the real public ones (BSE-JSRT, dual-energy pairs,
Shenzhen, Montgomery, ChestX-ray8), so manifests, stacks and the workflow run on them unchanged.

Every image has its own child of one ``SeedSequence([seed, kind])``: the same seed gives the
same files, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrbs.core.atomic import ensure_dir
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png
from cxrbs.data.phantom_anatomy import consolidation, tb_opacities
from cxrbs.data.phantoms import MIN_SIZE, PHANTOM_KINDS, phantom_from, random_phantom

__all__ = ["write_layout"]


def _save_png(path: Path, img01: np.ndarray) -> None:
    """8-bit PNG like the public sets ship, written atomically by the package's one PNG writer."""
    write_png(path, img01, bits=8)


def write_layout(kind: str, outdir: Path, n: int, *, size: int = 256, seed: int = 0,
                 severity: float = 1.0) -> Path:
    """Write ``n`` synthetic images in the file layout of a real public data set.

    ``severity`` scales the findings of labelled sets: small demo images need stronger
    opacities than 256-pixel ones for a classifier to have something to learn in a few epochs.

    Layouts: "pairs" (BSE-JSRT ``source/`` and ``target/``), "des" (dual-energy pairs from
    another institution), "scanner2" (pairs from another scanner, bone layer removed), "shenzhen" and "montgomery" (``*_L.png``, L = 1 TB) and "cxr8"
    (``normal/`` and ``abnormal/``, ``PPPPPPPP_FFF.png`` with follow-ups per patient).
    """
    if kind not in PHANTOM_KINDS:
        raise CxrbsError(
            f"unknown phantom kind {kind!r}: use one of {', '.join(PHANTOM_KINDS)}"
        )
    if int(n) != n or n < 1:
        raise CxrbsError(f"number of phantom images n must be a positive integer, got {n}")
    if int(size) != size or size < MIN_SIZE:
        raise CxrbsError(f"phantom size must be an integer >= {MIN_SIZE}, got {size}")
    if int(seed) != seed or seed < 0:
        raise CxrbsError(f"phantom seed must be a non-negative integer, got {seed}")
    if not np.isfinite(severity) or severity < 0:
        raise CxrbsError(f"phantom severity must be a finite number >= 0, got {severity}")
    outdir = ensure_dir(outdir)
    root = np.random.SeedSequence([int(seed), PHANTOM_KINDS.index(kind)])
    writer = {
        "pairs": _write_pairs,
        "des": _write_pairs,
        "scanner2": _write_pairs,
        "shenzhen": _write_tb,
        "montgomery": _write_tb,
        "cxr8": _write_cxr8,
    }[kind]
    writer(kind, outdir, int(n), int(size), root, float(severity))
    return outdir


def _write_pairs(kind: str, outdir: Path, n: int, size: int, root: np.random.SeedSequence,
                 scale: float = 1.0) -> None:
    for i, child in enumerate(root.spawn(n), start=1):
        ph = random_phantom(np.random.default_rng(child), size, None, 0.0)
        source = ph.radiograph
        if kind == "pairs":
            name, target = f"JPCNN{i:03d}.png", ph.soft_tissue
        elif kind == "des":
            name, target = f"SZCH_{i:04d}.png", ph.dual_energy
        else:
            name = f"SCN2_{i:04d}.png"
            source, target = ph.scanner2_pair
        _save_png(outdir / "source" / name, source)
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
        ph = random_phantom(rng, size, tb_opacities if label else None, severity * scale)
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
            ph = phantom_from(
                np.random.default_rng(anat_seq), np.random.default_rng(tex_seq), noise, lesion,
                size, consolidation if label else None, float(lesion.uniform(0.7, 1.5)) * scale,
            )
            folder = "abnormal" if label else "normal"
            _save_png(outdir / folder / f"{pid:08d}_{follow:03d}.png", ph.radiograph)
