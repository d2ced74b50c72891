"""The control arm: an image change of the same energy as bone suppression that removes no bones.

If the bone-suppressed arm scores better than the originals, was it the bones, or would any change
of the images have moved the scores? Each image i receives the change that bone suppression made
to ANOTHER patient's image j (d_j = suppressed_j - original_j), rescaled to the energy (L2 norm)
of its own change d_i. The result has the same amount of change, the same kind of smooth,
rib-shaped structure and the same percentile stretch as the bone-suppressed arm, but its bones
are still there. Bone suppression is credited only if it beats this control as well.
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

#: Random orders tried before giving up on pairing every image with another patient's.
_TRIES = 100


def partners(patients: np.ndarray, seed: int) -> np.ndarray:
    """partner[i]: the image whose change image i receives; always another patient's image.

    A random cyclic order (each image takes the next one's change) is a derangement; orders that
    pair two images of one patient are redrawn.
    """
    ids = np.asarray(patients).astype(str)
    if np.unique(ids).size < 2:
        raise CxrbsError("the control arm needs images of at least 2 patients")
    rng = np.random.default_rng(seed)
    for _ in range(_TRIES):
        order = rng.permutation(ids.size)
        partner = np.empty(ids.size, dtype=int)
        partner[order] = np.roll(order, -1)
        if not np.any(ids[partner] == ids):
            return partner
    raise CxrbsError("could not pair every image with another patient's for the control arm: "
                     "one patient holds most of the images")


def energy_matched_control(original: np.ndarray, suppressed: np.ndarray, partner: np.ndarray,
                           *, low_pct: float | None = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """original + (partner's change scaled to this image's change energy), clipped and stretched."""
    change = suppressed - original
    norms = np.sqrt(np.sum(change.reshape(len(change), -1) ** 2, axis=1))
    scale = np.divide(norms, norms[partner], out=np.zeros_like(norms), where=norms[partner] > 0)
    moved = original + change[partner] * scale[:, None, None]
    return restretch(np.clip(moved, 0.0, 1.0), low_pct, high_pct)


def control_stack(original_path: Path, suppressed_path: Path, manifest_path: Path, *,
                  out_stack: Path, out_manifest: Path, seed: int, low_pct: float | None = 1.0,
                  high_pct: float = 99.0) -> pd.DataFrame:
    """Write the control arm's (N,1,S,S) uint16 stack and its manifest (with each partner)."""
    original = from_uint16(np.asarray(load_stack(original_path)[:, 0]))
    suppressed = from_uint16(np.asarray(load_stack(suppressed_path)[:, 0]))
    if original.shape != suppressed.shape:
        raise CxrbsError(f"{original_path} and {suppressed_path} differ in shape "
                         f"({original.shape} vs {suppressed.shape}): rerun suppress_tb")
    manifest = read_manifest(manifest_path)
    partner = partners(manifest["patient_id"].to_numpy(), seed)
    control = energy_matched_control(original, suppressed, partner, low_pct=low_pct,
                                     high_pct=high_pct)
    with atomic_path(out_stack) as tmp:
        out = open_memmap(tmp, np.uint16, (len(control), 1, *control.shape[1:]))
        out[:, 0] = to_uint16(control)
        out.flush()
        del out
    result = manifest.assign(control_change_from=manifest["image_path"].to_numpy()[partner])
    write_csv(out_manifest, result)
    return result
