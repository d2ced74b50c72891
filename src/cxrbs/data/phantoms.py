"""Synthetic PA chest radiographs, so the whole workflow runs offline without real data.

A phantom is a soft-tissue layer plus an additive bone layer plus one shared noise field: the
radiograph is ``soft + bones + noise`` and its bone-suppressed counterpart ``soft + noise``, so
a pair differs by the bone layer only, like a BSE-JSRT source/target pair. As in BSE-JSRT,
the bone layer holds the bone shadows over the lung fields only (ribs, clavicles, scapular
edges); shadows outside them (spine, chest-wall ribs, clavicle ends) stay in ``soft`` and are
kept separately in ``outer_bones`` because dual-energy soft-tissue images remove those too.

Geometry is in unit coordinates (x, y in [0, 1], y downwards) so every size looks alike;
display polarity throughout (air and lungs dark, bone bright). The layers are drawn in
``phantom_anatomy``; ``phantom_layouts`` writes them in the file layouts of the real data sets.

Two cross-institution test sets: ``des`` imitates dual-energy labels (every bone removed, global
contrast flattened: a label shift, so no BSE-trained model beats identity there), ``scanner2``
imitates another scanner (more noise, another contrast/gamma response, another image size) whose
targets still differ from their sources by the bone layer only, so it measures bone removal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxrbs.core.errors import CxrbsError
from cxrbs.data.phantom_anatomy import (
    Lesion,
    bone_shadows,
    consolidation,
    draw_anatomy,
    soft_tissue_layer,
    tb_opacities,
)

__all__ = ["PHANTOM_KINDS", "Phantom", "make_phantom", "scanner2_response"]

# "scanner2" appended last: a kind's position seeds its images, so the other kinds keep theirs.
PHANTOM_KINDS: tuple[str, ...] = ("pairs", "des", "shenzhen", "montgomery", "cxr8", "scanner2")

#: Scanner 2 (kind ``scanner2``): quantum noise times this gain, then the detector response
#: ``offset + gain * x**gamma``: brighter, lower contrast and more noise than the training pairs,
#: a shift a model has to generalise across while the bone layer stays the only pair difference.
SCANNER2_NOISE_GAIN = 1.75
SCANNER2_OFFSET, SCANNER2_GAIN, SCANNER2_GAMMA = 0.06, 0.86, 0.85

MIN_SIZE = 32


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

    @property
    def scanner2_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) as scanner 2 records them: the target is the source without the bone
        layer (same soft tissue, same noise), both through ``scanner2_response``."""
        noise = self.noise * np.float32(SCANNER2_NOISE_GAIN)
        return (scanner2_response(self.soft + self.bones + noise),
                scanner2_response(self.soft + noise))


def scanner2_response(img: np.ndarray) -> np.ndarray:
    """Scanner 2's detector response applied to an image in display units (clipped to [0, 1])."""
    return _clip01(SCANNER2_OFFSET + SCANNER2_GAIN * _clip01(img) ** SCANNER2_GAMMA)


def make_phantom(
    rng: np.random.Generator, size: int = 256, *, tb: bool = False, tb_severity: float = 1.0
) -> Phantom:
    """One synthetic PA chest radiograph; ``tb`` adds upper-lobe opacities to the soft tissue.

    The anatomy, texture and noise come from their own child generators, so the same seed with
    and without ``tb`` gives the same patient and differs only by the opacities.
    """
    if tb_severity < 0 or not np.isfinite(tb_severity):
        raise CxrbsError(f"tb_severity must be a finite number >= 0, got {tb_severity}")
    return random_phantom(rng, size, tb_opacities if tb else None, tb_severity)


def random_phantom(
    rng: np.random.Generator, size: int, lesion: Lesion | None, severity: float
) -> Phantom:
    # child generators from drawn seeds (Generator.spawn needs numpy >= 1.25; we allow 1.24)
    anat_rng, tex_rng, noise_rng, lesion_rng = (
        np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=4)
    )
    return phantom_from(anat_rng, tex_rng, noise_rng, lesion_rng, size, lesion, severity)


def phantom_from(
    anat_rng: np.random.Generator,
    tex_rng: np.random.Generator,
    noise_rng: np.random.Generator,
    lesion_rng: np.random.Generator,
    size: int,
    lesion: Lesion | None,
    severity: float,
) -> Phantom:
    if int(size) != size or size < MIN_SIZE:
        raise CxrbsError(f"phantom size must be an integer >= {MIN_SIZE}, got {size}")
    size = int(size)
    anat = draw_anatomy(anat_rng, size)
    soft = soft_tissue_layer(anat, anat_rng, tex_rng)
    cage, clavicles = bone_shadows(anat, anat_rng)
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
