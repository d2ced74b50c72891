"""The control (sham) arm: an image change like bone suppression's that removes no bones (issue 22).

If the bone-suppressed arm scores better than the originals, was it the bones, or would any change
of the images have moved the scores? Each image i receives a sham version of ITS OWN
bone-suppression change d_i = suppressed_i - original_i (never another image's, so never another
patient's or another fold's):

* the low band of d_i (spatial frequencies up to ``cutoff_cycles`` per image side: broader than
  the rib pattern) is kept as it is: the broad shading and contrast change suppression makes;
* the high band (the rib- and clavicle-scale structure that removes the bones) is replaced by
  a phase-randomised copy: the same Fourier amplitude profile, hence the same spatial scales, but
  random phases, so it is no longer aligned with this image's bones and on average removes none
  of them; it is scaled so that the whole sham change has the energy (L2 norm) of d_i.

The result has the change energy, spectrum and percentile stretch of the bone-suppressed arm, and
its bones are still there. Bone suppression is credited only if it beats this control as well
(a gatekept hypothesis) while the control is equivalent to the originals (``cls.equivalence_margin``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrbs.bs.suppress import restretch
from cxrbs.core.atomic import atomic_path, open_memmap, write_csv
from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import from_uint16, to_uint16
from cxrbs.data.stacks import load_stack, read_manifest
from cxrbs.core.config import HIGH_PCT, LOW_PCT

#: Frequencies up to this many cycles per image side form the low band (periods longer than a
#: quarter of the image: the broad shading); ribs repeat about 8-12 times over a chest
#: radiograph's height, so their pattern lies in the high band.
CUTOFF_CYCLES = 4.0
CONTROL_KIND = "own change: low band kept, high band phase-randomised"


def _low_mask(shape: tuple[int, int], cutoff_cycles: float) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0]) * shape[0]
    fx = np.fft.rfftfreq(shape[1]) * shape[1]
    return np.hypot(fy[:, None], fx[None, :]) <= cutoff_cycles


def split_change(change: np.ndarray, cutoff_cycles: float = CUTOFF_CYCLES,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) with low + high == change, per image of an (N, H, W) stack: a sharp radial
    split of the Fourier spectrum, so the two bands are orthogonal."""
    mask = _low_mask(change.shape[-2:], cutoff_cycles)
    spec = np.fft.rfft2(change, axes=(-2, -1))
    low = np.fft.irfft2(spec * mask, s=change.shape[-2:], axes=(-2, -1))
    return low, change - low


def phase_randomise(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Same Fourier amplitudes, uniform random phases, rescaled to the same L2 norm (per image)."""
    out = np.empty_like(field, dtype=np.float64)
    for i, f in enumerate(field):
        spec = np.fft.rfft2(f)
        phase = np.exp(1j * rng.uniform(0, 2 * np.pi, spec.shape))
        phase[0, 0] = 1.0  # keep the mean (the DC term) as it is
        r = np.fft.irfft2(np.abs(spec) * phase, s=f.shape)
        norm_in, norm_out = np.linalg.norm(f - f.mean()), np.linalg.norm(r - r.mean())
        out[i] = f.mean() + (r - r.mean()) * (norm_in / norm_out if norm_out > 0 else 0.0)
    return out


def _energy_scale(low: np.ndarray, rand: np.ndarray, change: np.ndarray) -> np.ndarray:
    """c per image with ||low + c rand|| = ||change||: the sham moves the image as far as the
    suppression did (the cross term of low and high is lost when the phases change)."""
    n = len(change)
    a = np.sum(rand.reshape(n, -1) ** 2, axis=1)
    b = 2 * np.sum((low * rand).reshape(n, -1), axis=1)
    c = np.sum(low.reshape(n, -1) ** 2, axis=1) - np.sum(change.reshape(n, -1) ** 2, axis=1)
    disc = np.maximum(b**2 - 4 * a * c, 0.0)
    return np.divide(-b + np.sqrt(disc), 2 * a, out=np.zeros(n), where=a > 0)


def sham_control(original: np.ndarray, suppressed: np.ndarray, *, seed: int,
                 cutoff_cycles: float = CUTOFF_CYCLES, low_pct: float | None = LOW_PCT,
                 high_pct: float = HIGH_PCT) -> np.ndarray:
    """original + low band(own change) + phase-randomised high band(own change), clipped, stretched."""
    if original.shape != suppressed.shape or original.ndim != 3:
        raise CxrbsError(f"original and suppressed must be equal (N, H, W) stacks; got "
                         f"{original.shape} and {suppressed.shape}")
    change = suppressed.astype(np.float64) - original.astype(np.float64)
    low, high = split_change(change, cutoff_cycles)
    rand = phase_randomise(high, np.random.default_rng(seed))
    sham = low + rand * _energy_scale(low, rand, change)[:, None, None]
    moved = original + sham.astype(original.dtype)
    return restretch(np.clip(moved, 0.0, 1.0), low_pct, high_pct)


def control_stack(original_path: Path, suppressed_path: Path, manifest_path: Path, *,
                  out_stack: Path, out_manifest: Path, seed: int, low_pct: float | None = LOW_PCT,
                  high_pct: float = HIGH_PCT, cutoff_cycles: float = CUTOFF_CYCLES) -> pd.DataFrame:
    """Write the control arm's (N,1,S,S) uint16 stack and its manifest (saying what was done)."""
    original = from_uint16(np.asarray(load_stack(original_path)[:, 0]))
    suppressed = from_uint16(np.asarray(load_stack(suppressed_path)[:, 0]))
    if original.shape != suppressed.shape:
        raise CxrbsError(f"{original_path} and {suppressed_path} differ in shape "
                         f"({original.shape} vs {suppressed.shape}): rerun suppress_tb")
    manifest = read_manifest(manifest_path)
    control = sham_control(original, suppressed, seed=seed, cutoff_cycles=cutoff_cycles,
                           low_pct=low_pct, high_pct=high_pct)
    with atomic_path(out_stack) as tmp:
        out = open_memmap(tmp, np.uint16, (len(control), 1, *control.shape[1:]))
        out[:, 0] = to_uint16(control)
        out.flush()
        del out
    result = manifest.assign(control_change_from=manifest["image_path"].to_numpy(),
                             control_kind=CONTROL_KIND)
    write_csv(out_manifest, result)
    return result
