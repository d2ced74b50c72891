"""Applying a trained bone-suppression model: to prepared TB stacks, and to users' own files.

Full resolution: a model sees the study's 256x256 contrast-stretched image. To return an image at
the input's own resolution we predict the *bone layer* at model scale (stretched input minus
prediction), map it back to the original intensity scale through the inverse stretch, upsample it
bilinearly and subtract it from the original. Bone shadows are smooth at model scale, so this keeps
the original's fine detail (noise, vessels) that a 256 -> 2048 upsampling of the prediction would blur.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.transform import resize
from tqdm import tqdm

from cxrbs.atomic import atomic_path, write_csv
from cxrbs.datasets import load_stack, read_manifest
from cxrbs.errors import CxrbsError
from cxrbs.io import SUPPORTED_SUFFIXES, read_image, write_dicom_derived, write_png
from cxrbs.preprocess import _resize, apply_stretch, from_uint16, stretch_limits, to_uint16
from cxrbs.train import load_bs_model, predict_images

log = logging.getLogger(__name__)


def suppress_stack(model_path: Path, stack_path: Path, manifest_path: Path, *, out_stack: Path,
                   out_manifest: Path, png_dir: Path | None = None, batch_size: int = 8,
                   progress: bool = True) -> pd.DataFrame:
    """Bone-suppress a prepared (N,1,S,S) stack batch by batch; PNG mirror named like the originals."""
    model, meta = load_bs_model(model_path)
    stack = load_stack(stack_path)
    manifest = read_manifest(manifest_path)
    n = stack.shape[0]
    png_paths = []
    with atomic_path(out_stack) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16, shape=(n, 1, *stack.shape[2:]))
        for start in tqdm(range(0, n, batch_size), desc=f"suppress {out_stack.parent.name}",
                          disable=not progress, unit="batch"):
            batch = from_uint16(np.asarray(stack[start:start + batch_size, 0]))
            pred = predict_images(model, batch, batch_size=batch_size)
            out[start:start + len(pred), 0] = to_uint16(pred)
            if png_dir is not None:
                for j, img in enumerate(pred):
                    name = Path(str(manifest["image_path"].iloc[start + j])).stem + ".png"
                    write_png(png_dir / name, img)
                    png_paths.append(str(png_dir / name))
        out.flush()
        del out
    result = manifest.assign(suppressed_path=png_paths if png_dir is not None else pd.NA,
                             model=meta.get("model_name", str(model_path)))
    write_csv(out_manifest, result)
    return result


def resolve_model(model: Path | None, best_json: Path = Path("results/bs/best.json")) -> Path:
    """``--model`` if given, else the workflow's selected model; otherwise say how to get one."""
    if model is not None:
        if not Path(model).is_file():
            raise CxrbsError(f"model checkpoint {model} does not exist")
        return Path(model)
    if best_json.is_file():
        choice = json.loads(best_json.read_text())
        path = Path(choice["checkpoint"])
        if not path.is_absolute():
            path = best_json.parent.parent.parent / path
        if path.is_file():
            return path
        raise CxrbsError(f"{best_json} names {path}, which is missing; rerun the workflow")
    raise CxrbsError(
        f"no model given and no {best_json}: train one with `snakemake --cores all` "
        "(or `cxrbs train-bs`), or pass --model path/to/best.pt"
    )


def iter_inputs(inputs: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders expanded (recursively) to their image files, sorted."""
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*")
                              if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        elif item.exists():
            yield item
        else:
            raise CxrbsError(f"input {item} does not exist")


def suppress_image(model: object, image: np.ndarray, *, size: int, low_pct: float = 1.0,
                   high_pct: float = 99.0, full_resolution: bool = True) -> np.ndarray:
    """Bone-suppress one image in [0,1]; see the module docstring for the full-resolution path."""
    small = _resize(image.astype(np.float64), size)
    lo, hi = stretch_limits(small, low_pct, high_pct)
    x = apply_stretch(small, lo, hi)
    pred = predict_images(model, x[None], batch_size=1)[0]
    if not full_resolution:
        return pred
    bone_small = (x - pred) * (hi - lo)  # back on the original intensity scale
    bone = resize(bone_small, image.shape, order=1, preserve_range=True, anti_aliasing=False)
    return np.clip(image - bone, 0.0, 1.0).astype(np.float32)


def suppress_files(inputs: Iterable[Path], outdir: Path, model_path: Path, *, fmt: str = "png",
                   full_resolution: bool = True, size: int | None = None,
                   progress: bool = True) -> list[Path]:
    """Stream files through the model one at a time (memory stays flat over thousands)."""
    model, meta = load_bs_model(model_path)
    size = size or int(meta.get("image_size") or 256)
    files = list(iter_inputs(inputs))
    if not files:
        raise CxrbsError("no input images found (PNG, JPEG, TIFF or DICOM)")
    written = []
    for path in tqdm(files, desc="suppress", disable=not progress, unit="img"):
        image = read_image(path)
        result = suppress_image(model, image, size=size, full_resolution=full_resolution)
        is_dicom = path.suffix.lower() in {".dcm", ".dicom"} or fmt == "dicom"
        if fmt == "dicom":
            if not is_dicom or path.suffix.lower() not in {".dcm", ".dicom"}:
                raise CxrbsError(f"{path}: DICOM output needs a DICOM input to take the tags from; "
                                 "use --format png for this file")
            target = outdir / (path.stem + "_bs.dcm")
            write_dicom_derived(target, result, path,
                                series_description=f"Bone suppressed ({meta.get('model_name', 'cxrbs')})")
        else:
            target = outdir / (path.stem + "_bs.png")
            write_png(target, result, bits=16 if full_resolution else 8)
        written.append(target)
    log.info("wrote %d bone-suppressed image(s) to %s", len(written), outdir)
    return written
