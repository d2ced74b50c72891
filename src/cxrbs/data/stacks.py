"""Image stacks: every data set read, preprocessed once, and kept as one ``.npy`` array.

Two kinds of stack exist, told apart by their dtype (never by a neighbouring file's name):

- *Prepared stacks*, uint16 (``results/data/<set>/images.npy``, the TB stacks after bone
  suppression): shape ``(N, C, S, S)``, C = 1 for single images, 2 for pairs (source, target);
  row ``i`` of the manifest is stack index ``i``. ``to_uint16``/``from_uint16`` convert; uint16
  keeps 4500 256² pairs at 1.2 GB instead of 2.4 GB and ``np.load(mmap_mode="r")`` streams it.
- *Training pairs*, float32 in [0,1] (``results/bs/data/train.npy`` and ``val.npy`` from
  ``cxrbs.bs.pairs``): shape ``(N, 2, S, S)``. The augmented pairs stay float32 because the
  augmentation's interpolated values would lose their sub-uint16 detail; rows are described by
  ``split.csv`` (validation rows in order), not by a manifest.

``load_stack`` opens a prepared (uint16) stack; ``read_stack`` reads either kind as float32 in
[0,1], choosing the conversion by the stored dtype.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from cxrbs.core.config import HIGH_PCT, LOW_PCT
from cxrbs.core.atomic import atomic_path, ensure_dir, open_memmap
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import DEFAULT_MAX_PIXELS, read_image_with_meta
from cxrbs.data.manifests import _display
from cxrbs.data.preprocess import (
    PAIR_MODES,
    check_options,
    from_uint16,
    preprocess,
    preprocess_pair,
    to_uint16,
)

log = logging.getLogger(__name__)


#: Facts of each original image the manifest keeps (from the one decode that builds the stack),
#: so later stages need not open the originals again: the size boxes and full-resolution
#: outputs refer to, the detector spacing (DICOM; empty otherwise) and the stored polarity.
IMAGE_META_COLUMNS = ("original_height", "original_width", "pixel_spacing_row_mm",
                      "pixel_spacing_col_mm", "photometric", "source_format")


def _meta_row(meta: dict[str, Any]) -> dict[str, Any]:
    height, width = meta["original_shape"]
    row_mm, col_mm = meta.get("pixel_spacing") or (None, None)
    return {"original_height": int(height), "original_width": int(width),
            "pixel_spacing_row_mm": row_mm, "pixel_spacing_col_mm": col_mm,
            "photometric": meta.get("photometric"), "source_format": meta.get("source_format")}


def build_stack(manifest: pd.DataFrame, out_path: Path, *, size: int, low_pct: float = LOW_PCT,
                high_pct: float = HIGH_PCT, pair_stretch: str = "shared",
                max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True) -> Path:
    """Read and preprocess every manifest row into ``out_path`` (written under a temporary name).

    Options are checked before anything is read, so a config typo fails at once, not after
    hours of decoding; the stack's disk space is reserved up front for the same reason.
    """
    return build_stack_with_meta(manifest, out_path, size=size, low_pct=low_pct,
                                 high_pct=high_pct, pair_stretch=pair_stretch,
                                 max_pixels=max_pixels, progress=progress)[0]


def build_stack_with_meta(manifest: pd.DataFrame, out_path: Path, *, size: int,
                          low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT,
                          pair_stretch: str = "shared", max_pixels: int = DEFAULT_MAX_PIXELS,
                          progress: bool = True) -> tuple[Path, pd.DataFrame]:
    """:func:`build_stack`, plus the manifest with :data:`IMAGE_META_COLUMNS` of each source
    image (the data stage writes that one as ``manifest.csv``)."""
    out_path = Path(out_path)
    size = _check_options(size, low_pct, high_pct, pair_stretch, max_pixels)
    paired = "target_path" in manifest and manifest["target_path"].notna().any()
    channels = 2 if paired else 1
    ensure_dir(out_path.parent)
    metas: list[dict[str, Any]] = []
    with atomic_path(out_path) as tmp:
        stack = open_memmap(tmp, np.uint16, (len(manifest), channels, size, size))
        rows = manifest.itertuples(index=False)
        for i, row in enumerate(tqdm(rows, total=len(manifest), desc=f"preprocess {out_path.parent.name}",
                                     disable=not progress, unit="img")):
            source, meta = read_image_with_meta(row.image_path, max_pixels=max_pixels)
            metas.append(_meta_row(meta))
            if paired:
                target, _ = read_image_with_meta(row.target_path, max_pixels=max_pixels)
                if source.shape != target.shape:
                    raise CxrbsError(
                        f"pair {_display(str(row.pair_id))}: source {_display(row.image_path)} "
                        f"is {source.shape[1]}x{source.shape[0]} but target "
                        f"{_display(row.target_path)} is {target.shape[1]}x{target.shape[0]}; "
                        "paired images must have the same size"
                    )
                s, t = preprocess_pair(source, target, size, low_pct=low_pct, high_pct=high_pct,
                                       mode=pair_stretch, name=_display(str(row.pair_id)))
                stack[i, 0] = to_uint16(s)
                stack[i, 1] = to_uint16(t)
            else:
                stack[i, 0] = to_uint16(preprocess(source, size, low_pct=low_pct, high_pct=high_pct))
        stack.flush()
        del stack
    log.info("wrote %s (%d images, %d channel(s), %dx%d)", out_path, len(manifest), channels, size, size)
    facts = pd.DataFrame(metas, columns=list(IMAGE_META_COLUMNS), index=manifest.index)
    kept = manifest.drop(columns=[c for c in IMAGE_META_COLUMNS if c in manifest])
    return out_path, pd.concat([kept, facts], axis=1)


def _check_options(size: int, low_pct: float, high_pct: float, pair_stretch: str,
                   max_pixels: int) -> int:
    """Name the config key of a wrong value; returns ``size`` as a plain int."""
    check_options(size, low_pct, high_pct)
    if pair_stretch not in PAIR_MODES:
        raise CxrbsError(f"preprocess.pair_stretch {pair_stretch!r} is unknown: use one of "
                         f"{', '.join(PAIR_MODES)}")
    is_int = isinstance(max_pixels, (int, np.integer)) and not isinstance(max_pixels, bool)
    if not is_int or max_pixels < 1:
        raise CxrbsError(f"max_image_pixels must be a positive integer, got {max_pixels!r}")
    return int(size)


def _open_stack(path: Path) -> np.ndarray:
    """Memory-map a .npy stack; missing or unreadable files give one line naming the fix."""
    if not path.is_file():
        raise CxrbsError(f"{path} is missing; run the workflow's data stage first (snakemake {path})")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise CxrbsError(f"{path} is not a readable .npy stack ({exc}); delete it and rerun") from exc


def load_stack(path: Path | str) -> np.ndarray:
    """Memory-map a stack; a missing or foreign file gives a message naming the rule that makes it."""
    path = Path(path)
    stack = _open_stack(path)
    if stack.dtype != np.uint16 or stack.ndim != 4:
        raise CxrbsError(f"{path} has dtype {stack.dtype} and shape {stack.shape}; expected uint16 (N,C,S,S)")
    return stack


#: Stored dtypes ``read_stack`` accepts, and what each is.
STACK_KINDS = {np.dtype(np.uint16): "prepared stack (uint16)",
               np.dtype(np.float32): "training pairs (float32 in [0,1])"}


def read_stack(path: Path | str) -> np.ndarray:
    """Either kind of stack as float32 (N,C,S,S) in [0,1], converted by its stored dtype."""
    path = Path(path)
    stack = _open_stack(path)
    if stack.dtype not in STACK_KINDS or stack.ndim != 4:
        raise CxrbsError(f"{path} has dtype {stack.dtype} and shape {stack.shape}; expected a "
                         "uint16 prepared stack or float32 training pairs, shape (N,C,S,S)")
    if stack.dtype == np.uint16:
        return from_uint16(np.asarray(stack))
    return np.asarray(stack, dtype=np.float32)


def read_manifest(path: Path | str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CxrbsError(f"manifest {path} is missing; run the workflow's data stage first")
    frame = pd.read_csv(path, dtype={"patient_id": str, "pair_id": str})
    if "index" not in frame or "patient_id" not in frame:
        raise CxrbsError(f"{path} is not a cxrbs manifest (needs columns index, patient_id)")
    return frame
