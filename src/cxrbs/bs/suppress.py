"""Applying a trained bone-suppression model: to prepared TB stacks, and to users' own files.

Full resolution: a model sees the study's 256x256 contrast-stretched image. To return an image at
the input's own resolution we predict the *bone layer* at model scale (stretched input minus
prediction), map it back to the original intensity scale through the inverse stretch, upsample it
bilinearly and subtract it from the original. Bone shadows are smooth at model scale, so this keeps
the original's fine detail (noise, vessels) that a 256 -> 2048 upsampling of the prediction would
blur.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from skimage.transform import resize
from tqdm import tqdm

from cxrbs.core.atomic import atomic_path, open_memmap, remove_stale_temps, write_csv
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.core.progress import progress_iter
from cxrbs.data.files import IMAGE_SUFFIXES as SUPPORTED_SUFFIXES
from cxrbs.data.checks import file_kind
from cxrbs.data.files import walk_images
from cxrbs.data.io import read_image, write_dicom_derived, write_png
from cxrbs.data.preprocess import resize_image, apply_stretch, from_uint16, stretch_limits, to_uint16
from cxrbs.bs.predict import load_bs_model, predict_images
from cxrbs.core.config import HIGH_PCT, LOW_PCT
from cxrbs.core.device import inference_amp

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("png", "dicom")
#: zlib level of the 16-bit full-resolution PNGs: 2.6x faster to encode than Pillow's default 6,
#: files 8% larger, the same pixels (``write_png``).
PNG_LEVEL = 3


def restretch(images: np.ndarray, low_pct: float | None, high_pct: float) -> np.ndarray:
    """Each image stretched by its own percentiles, as the originals were when prepared.

    Without it the arms differ in intensity histogram as well as in bones (issue 12): the original
    stack saturates its bottom and top 1%, a model's prediction does not. ``low_pct=None`` skips.
    """
    if low_pct is None:
        return np.asarray(images, dtype=np.float32)
    return np.stack([apply_stretch(img, *stretch_limits(img, low_pct, high_pct))
                     for img in images]).astype(np.float32)


def suppress_stack(model_path: Path, stack_path: Path, manifest_path: Path, *, out_stack: Path,
                   out_manifest: Path, png_dir: Path | None = None, batch_size: int = 8,
                   progress: bool = True, low_pct: float | None = LOW_PCT,
                   high_pct: float = HIGH_PCT) -> pd.DataFrame:
    """Bone-suppress a prepared (N,1,S,S) stack batch by batch; PNG mirror named like originals.

    Predictions get the same percentile stretch as the original stack (``low_pct``/``high_pct``:
    the config's preprocess percentiles), so the two arms differ in bones, not in histogram.
    """
    import pandas as pd  # here, not at the top: `cxrbs suppress` on files never needs pandas

    from cxrbs.data.stacks import load_stack, read_manifest

    model, meta = load_bs_model(model_path)
    stack = load_stack(stack_path)
    manifest = read_manifest(manifest_path)
    n = stack.shape[0]
    png_paths = []
    with atomic_path(out_stack) as tmp:
        out = open_memmap(tmp, np.uint16, (n, 1, *stack.shape[2:]))
        for start in tqdm(range(0, n, batch_size), desc=f"suppress {out_stack.parent.name}",
                          disable=not progress, unit="batch"):
            batch = from_uint16(np.asarray(stack[start:start + batch_size, 0]))
            pred = restretch(predict_images(model, batch, batch_size=batch_size), low_pct, high_pct)
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


def resolve_model(model: Path | str | None, layout: Layout | None = None) -> Path:
    """The checkpoint to use, and say which when it was not named.

    ``--model`` may be a checkpoint path or the name of a bundled model (``cxrbs models``).
    Without it: the workflow's choice (``results/bs/best.json`` under the current folder, found
    through :class:`Layout`), else the default bundled model, so suppression works out of the box.
    Bundled weights are checked against their recorded sha256 before they are loaded.
    """
    from cxrbs.bs.bundled import default_bundled, get_bundled, is_bundled_name, verified_weights

    layout = layout or Layout()
    best_json = layout.bs_best
    if model is not None:
        if Path(model).is_file():
            return Path(model)
        if is_bundled_name(str(model)):
            bundled = get_bundled(str(model))
            log.info("using bundled model %s (model card: %s)", bundled.name, bundled.card)
            return verified_weights(bundled)
        raise CxrbsError(f"--model {model}: no such checkpoint file and no bundled model of that "
                         "name; check the path, or see `cxrbs models`")
    if best_json.is_file():
        path = layout.chosen_checkpoint()
        if path.is_file():
            log.info("using the workflow's selected model %s (from %s)", path, best_json)
            return path
        raise CxrbsError(f"{best_json} names {path}, which is missing; rerun the workflow "
                         "or pass --model path/to/best.pt")
    bundled_default = default_bundled()
    if bundled_default is not None:
        log.warning("no --model and no %s here: using the bundled model %s (model card: %s)",
                    best_json, bundled_default.name, bundled_default.card)
        return verified_weights(bundled_default)
    raise CxrbsError(
        f"no model given and no {best_json}: train one with `snakemake --cores all` "
        "(or `cxrbs train-bs`), or pass --model path/to/best.pt"
    )


def model_image_size(meta: dict[str, Any], default: int = 256) -> int:
    """The side the model was trained at: its validation images are the uncropped, unaugmented
    preprocessed stack, so their side is the preprocessing size (crop_size only cuts patches).
    Checkpoints record it as ``input_size``; older ones are read through their data shapes."""
    size = meta.get("input_size")
    if isinstance(size, (list, tuple)) and size:
        size = size[0]
    if size:
        return int(size)
    if meta.get("image_size"):
        return int(meta["image_size"])
    shape = (meta.get("data") or {}).get("val_shape") or (meta.get("data") or {}).get("train_shape")
    if shape and len(shape) == 4 and shape[2] == shape[3]:
        return int(shape[2])
    return default


def iter_inputs(inputs: Iterable[Path], *, exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Files as given; folders expanded (recursively) to their image files, sorted.

    In folders, DICOM files named by UID (no image suffix) are found by their 'DICM' marker;
    hidden files are skipped: they are OS litter or half-written temporaries (ours included).
    Folders in ``exclude`` (the command's output folder) are never entered, so outputs written
    inside an input folder are not read back as inputs by the next run.
    """
    exclude = list(exclude)
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            yield from sorted(walk_images(item, exclude=exclude))
        elif item.exists():
            yield item
        else:
            raise CxrbsError(f"input {item} does not exist: check the path")


def suppress_image(model: Any, image: np.ndarray, *, size: int, low_pct: float = LOW_PCT,
                   high_pct: float = HIGH_PCT, full_resolution: bool = True,
                   flip_tta: bool = False, amp: str = "none",
                   channels_last: bool = False) -> np.ndarray:
    """Bone-suppress one image in [0,1]; see the module docstring for the full-resolution path.

    ``flip_tta`` averages the prediction of the image and of its left-right mirror (mirrored
    back): a test-time augmentation measured in the bundled model's search (README).
    ``amp``/``channels_last`` pick the network's arithmetic (:func:`suppress_files` sets them from
    ``precision``); the defaults are the fp32 reference path.
    """
    small = resize_image(image.astype(np.float64), size)
    lo, hi = stretch_limits(small, low_pct, high_pct)
    x = apply_stretch(small, lo, hi)
    if flip_tta:
        both = predict_images(model, np.stack([x, x[:, ::-1].copy()]), batch_size=2, amp=amp,
                              channels_last=channels_last)
        pred = 0.5 * (both[0] + both[1][:, ::-1])
    else:
        pred = predict_images(model, x[None], batch_size=1, amp=amp,
                              channels_last=channels_last)[0]
    if not full_resolution:
        return pred
    bone_small = (x - pred) * (hi - lo)  # back on the original intensity scale
    bone = resize(bone_small, image.shape, order=1, preserve_range=True, anti_aliasing=False)
    return np.clip(image - bone, 0.0, 1.0).astype(np.float32)


def _stem(path: Path) -> str:
    """File name without its image suffix; a UID name such as 1.2.840.5 keeps all its parts."""
    return path.stem if path.suffix.lower() in SUPPORTED_SUFFIXES else path.name


def _output_plan(inputs: Iterable[Path], outdir: Path, fmt: str,
                 exclude: Iterable[Path] = ()) -> list[tuple[Path, Path]]:
    """(input, output) pairs; files found in a folder keep their sub-folder below ``outdir``.

    Files below an ``exclude`` folder (the output folder, when it lies inside an input folder)
    are not inputs: a second run must not suppress its own results again (NAME_bs_bs.png).

    Two inputs that would land on one output name are refused up front: silently overwriting
    one patient's result with another's is worse than stopping.
    """
    suffix = ".dcm" if fmt == "dicom" else ".png"
    plan: list[tuple[Path, Path]] = []
    skip = [Path(e).resolve() for e in exclude]
    for item in inputs:
        item = Path(item)
        files = list(iter_inputs([item], exclude=[outdir, *skip]))
        for path in files:
            rel = path.relative_to(item).parent if item.is_dir() else Path()
            plan.append((path, outdir / rel / f"{_stem(path)}_bs{suffix}"))
    _refuse_outputs_among_inputs(plan, outdir)
    seen: dict[Path, Path] = {}
    for src, dst in plan:
        if dst in seen:
            raise CxrbsError(f"{seen[dst]} and {src} would both be written to {dst}: rename one "
                             "of them or suppress them into separate output folders")
        seen[dst] = src
    return plan


def _refuse_outputs_among_inputs(plan: list[tuple[Path, Path]], outdir: Path) -> None:
    """Refuse an input that this run would overwrite with another input's result.

    ``suppress IN/*.png -o IN`` run twice finds IN/a_bs.png among its inputs: suppressing it again
    gives a_bs_bs.png, and writing a.png's result replaces it while it is an input. A PNG carries
    no mark of who wrote it, so a_bs.png may be a user's own file: refuse rather than guess.
    """
    sources = {src.resolve(): src for src, _ in plan}
    for src, dst in plan:
        clash = sources.get(dst.resolve())
        if clash is not None:
            raise CxrbsError(f"-o {outdir}: input {clash} would be overwritten by the result for "
                             f"{src} (an earlier run's output?); write into another folder "
                             f"(-o {Path(outdir).name}_bs) or leave the *_bs files out of the "
                             "inputs")


def _read_checked(path: Path, fmt: str) -> np.ndarray:
    if fmt == "dicom" and file_kind(path) != "dicom":  # a pipe: "not a regular file"
        raise CxrbsError(f"{path}: DICOM output needs a DICOM input to take the patient "
                         "and study tags from; use --format png for this file")
    return read_image(path)


def suppress_files(inputs: Iterable[Path], outdir: Path, model_path: Path, *, fmt: str = "png",
                   full_resolution: bool = True, size: int | None = None, progress: bool = True,
                   device: str = "cpu", exclude: Iterable[Path] = (),
                   on_error: Callable[[Path, CxrbsError], None] | None = None,
                   workers: int | None = None, precision: str = "auto") -> list[Path]:
    """Stream files through the model (memory stays flat over thousands of files).

    ``workers`` images are in flight at once, each read, suppressed and written whole on its own
    thread with one torch thread (default: one per torch thread, at most one per file). Why
    lanes and not one multi-threaded forward pass: on 2 cores a 256² forward gains only 1.8x
    from a second thread, and when another process holds a core the threads of one pass wait
    for each other (measured 3.7-10x slower); independent lanes just slow down by the share
    they lose. Each image still goes through :func:`suppress_image` alone, so the number of
    lanes never changes a result. ``precision``: ``auto`` runs bf16 (channels-last) where the
    device computes it natively (README: max 0.86, mean 0.014 grey levels from fp32 on the real
    images), ``fp32`` is the reference path, ``bf16`` forces it.
    Without ``on_error`` the first bad file stops the run; with it, bad files are reported to it
    and skipped. Either way a failed file leaves no output (writes are atomic).
    """
    if fmt not in OUTPUT_FORMATS:
        raise CxrbsError(f"unknown output format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    if workers is not None and int(workers) < 1:
        raise CxrbsError(f"workers must be >= 1, got {workers!r}")
    outdir = Path(outdir)
    plan = _output_plan(inputs, outdir, fmt, exclude)
    if not plan:
        raise CxrbsError("no input images found (PNG, JPEG, TIFF or DICOM)")
    for folder in sorted({target.parent for _, target in plan}):
        remove_stale_temps(folder)  # hidden partial outputs of an earlier run that was killed
    model, meta = load_bs_model(model_path, device=device)
    amp = inference_amp(precision, next(model.parameters()).device)
    fast = amp != "none"  # channels-last only with bf16: fp32 stays the reference arithmetic
    if fast:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    size = size or model_image_size(meta)
    description = f"Bone suppressed ({meta.get('model_name', 'cxrbs')})"
    low, high = float(meta.get("low_pct", LOW_PCT)), float(meta.get("high_pct", HIGH_PCT))
    threads = torch.get_num_threads()
    lanes = max(1, min(len(plan), int(workers) if workers is not None else threads))

    def process(path: Path, target: Path) -> Path:
        image = _read_checked(path, fmt)
        result = suppress_image(model, image, size=size, low_pct=low, high_pct=high,
                                full_resolution=full_resolution, amp=amp, channels_last=fast)
        if fmt == "dicom":
            write_dicom_derived(target, result, path, series_description=description)
        elif full_resolution:
            write_png(target, result, bits=16, compress_level=PNG_LEVEL)
        else:
            write_png(target, result, bits=8)
        return target

    def failed(path: Path, exc: CxrbsError) -> None:
        if on_error is None:
            raise exc
        on_error(path, exc)

    written: list[Path] = []
    if lanes == 1:
        for path, target in progress_iter(plan, desc="suppress", bar=progress, unit="image"):
            try:
                written.append(process(path, target))
            except CxrbsError as exc:
                failed(path, exc)
    else:
        torch.set_num_threads(max(1, threads // lanes))
        try:
            _run_lanes(plan, process, failed, written, lanes, progress)
        finally:
            torch.set_num_threads(threads)
    log.debug("wrote %d bone-suppressed image(s) to %s", len(written), outdir)
    return written


def _run_lanes(plan: list[tuple[Path, Path]], process: Callable[[Path, Path], Path],
               failed: Callable[[Path, CxrbsError], None], written: list[Path], lanes: int,
               progress: bool) -> None:
    """Run ``process`` on ``lanes`` threads, results taken in input order.

    At most 2 x lanes files are queued, so memory does not grow with the folder; on a stop
    (first error without ``on_error``, Ctrl-C) queued files are cancelled and started ones are
    let finish, so no half-written output is left behind (each write is atomic anyway).
    """
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="suppress") as pool:
        pending: deque[tuple[Path, Future[Path]]] = deque()
        queue = iter(plan)
        try:
            for _ in progress_iter(plan, desc="suppress", bar=progress, unit="image"):
                while len(pending) < 2 * lanes and (item := next(queue, None)) is not None:
                    pending.append((item[0], pool.submit(process, *item)))
                path, fut = pending.popleft()
                try:
                    written.append(fut.result())
                except CxrbsError as exc:
                    failed(path, exc)
        finally:
            for _, fut in pending:
                fut.cancel()
            for _, fut in pending:
                if not fut.cancelled():
                    fut.exception()  # wait: a started write finishes (atomically) before we leave
