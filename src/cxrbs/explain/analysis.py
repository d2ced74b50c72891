"""The explain stage: models + stacks in, the tables and arrays the figures draw from out.

It runs the selected bone-suppression model on the best, median and worst test pair, extracts
each fold model's pooled features (cluster scores for every fold, t-SNE for the first), scores
CRM and Grad-CAM mass inside expert boxes, and keeps the maps of the first fold's right and
wrong TB cases. Parts whose inputs are absent are skipped with a one-line note (written to the
notes file), so the report still builds, e.g., without expert boxes.

The two checkpoint loaders are called only in :func:`_load_bs_model` and :func:`_load_classifier`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import WORKFLOW, Layout
from cxrbs.explain.overlay import Box
from cxrbs.explain.selection import example_indices, select_crm_cases
from cxrbs.explain.store import (
    BS_EXAMPLE_COLUMNS,
    CRM_BOX_COLUMNS,
    CRM_CASE_COLUMNS,
    FEATURE_SPACE_COLUMNS,
    NOTE_SECTIONS,
    TSNE_COLUMNS,
    ExplainFiles,
    save_arrays,
    write_notes,
    write_table,
)

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "bone_suppressed")


def _load_bs_model(checkpoint: Path) -> Any:
    from cxrbs.bs.predict import load_bs_model

    return load_bs_model(checkpoint)[0]


def _load_classifier(path: Path, device: Any) -> Any:
    from cxrbs.cls.train import load_classifier

    return load_classifier(path, device=device)[0]


@dataclass
class _Notes:
    lines: dict[str, list[str]]

    def __call__(self, section: str, text: str) -> None:
        self.lines[section].append(text)
        log.info("%s: %s", section, text)


@dataclass
class _Out:
    """What the analysis collects before writing it."""

    bs_rows: list[dict[str, Any]]
    bs_arrays: dict[str, np.ndarray]
    fs_rows: list[dict[str, Any]]
    box_rows: list[dict[str, Any]]
    case_rows: list[dict[str, Any]]
    crm_arrays: dict[str, np.ndarray]
    tsne_rows: list[dict[str, Any]]


def _datasets(config: Mapping[str, Any], role: str) -> list[str]:
    specs = (config.get("datasets") or {}).items()
    return sorted(n for n, s in specs if (s or {}).get("role") == role)


def run_analysis(layout: Layout, config: Mapping[str, Any], files: ExplainFiles, *,
                 boxes_csv: str | Path | None = None) -> dict[str, list[str]]:
    """Compute everything the relevance-map, feature-space and example figures show; write
    ``files`` (``files.crm_boxes`` only with ``boxes_csv``) and return the notes by section.

    ``layout`` locates the inputs (the explain rule declares every one of them).
    """
    notes = _Notes({s: [] for s in NOTE_SECTIONS})
    out = _Out([], {}, [], [], [], {}, [])
    bs_examples(layout, config, out, notes)
    _model_analysis(layout, config, out, notes, Path(boxes_csv) if boxes_csv else None)
    save_arrays(files.bs_examples, out.bs_arrays)
    write_table(files.bs_examples_table, out.bs_rows, BS_EXAMPLE_COLUMNS)
    save_arrays(files.crm_maps, out.crm_arrays)
    write_table(files.crm_cases, out.case_rows, CRM_CASE_COLUMNS)
    write_table(files.tsne, out.tsne_rows, TSNE_COLUMNS)
    write_table(files.feature_space, out.fs_rows, FEATURE_SPACE_COLUMNS)
    if boxes_csv and files.crm_boxes is not None:
        write_table(files.crm_boxes, out.box_rows, CRM_BOX_COLUMNS)
    write_notes(files.notes, notes.lines)
    return notes.lines


# ---------------------------------------------------------------------------------------------
# bone suppression: best, median and worst test pair through the selected model
# ---------------------------------------------------------------------------------------------
def bs_examples(layout: Layout, config: Mapping[str, Any], out: _Out, note: _Notes) -> None:
    sec = "bone_suppression"
    if not layout.bs_best.is_file():
        note(sec, f"no selected model ({WORKFLOW.bs_best}): example images left out")
        return
    checkpoint = layout.chosen_checkpoint()
    arch = layout.bs_arch_of(checkpoint)
    tests = _datasets(config, "bs_test")
    tests = tests or sorted(p.stem for p in layout.bs_eval_dir(arch).glob("*.csv"))
    evals = [layout.bs_eval(arch, t) for t in tests]
    evals = [p for p in evals if p.is_file()]
    if not checkpoint.is_file() or not evals:
        note(sec, f"model {arch}: checkpoint or per-image evaluation missing; "
                  "example images left out")
        return
    from cxrbs.bs.predict import predict_images
    from cxrbs.data.preprocess import from_uint16
    from cxrbs.data.stacks import load_stack, read_manifest

    model = _load_bs_model(checkpoint)
    for eval_csv in evals:
        test = eval_csv.stem
        stack_path, manifest_path = layout.stack(test), layout.manifest(test)
        if not (stack_path.is_file() and manifest_path.is_file()):
            note(sec, f"test set {test}: prepared stack missing; example images left out")
            continue
        per_image = pd.read_csv(eval_csv, dtype={"name": str})
        index = {n: i for i, n in enumerate(read_manifest(manifest_path)["pair_id"].astype(str))}
        per_image = per_image[per_image["name"].isin(list(index))].reset_index(drop=True)
        picks = example_indices(per_image["psnr"].to_numpy(float))
        if not picks:
            note(sec, f"test set {test}: no finite PSNR to rank examples by")
            continue
        rows = [index[per_image["name"][i]] for _, i in picks]
        pairs = from_uint16(np.asarray(load_stack(stack_path)[rows]))
        out.bs_arrays[f"source_{test}"] = pairs[:, 0]
        out.bs_arrays[f"prediction_{test}"] = predict_images(model, pairs[:, 0], batch_size=4)
        out.bs_arrays[f"target_{test}"] = pairs[:, 1]
        # Picks are ordered best, median, worst: the figure keeps that order.
        out.bs_rows += [{"test_set": test, "arch": arch, "kind": kind,
                         "name": str(per_image["name"][i]), "psnr": float(per_image["psnr"][i])}
                        for kind, i in picks]


# ---------------------------------------------------------------------------------------------
# relevance maps, box localisation and feature space, from the fold models
# ---------------------------------------------------------------------------------------------
@dataclass
class _FoldData:
    """One TB set's held-out images of one fold, both variants, with their models."""

    dataset: str
    fold: int
    first: bool
    names: list[str]
    labels: np.ndarray
    image_paths: list[str]
    #: (height, width) of each original, from the manifest (None: a manifest from before the
    #: data stage recorded it; the file's header is read then)
    sizes: list[tuple[int, int] | None]
    images: dict[str, np.ndarray]
    models: dict[str, Any]
    #: each image's lung box (top, left, bottom, right fractions) where the set's classifiers
    #: see lung crops (``cls.lung_crop``); None: whole images
    crop_boxes: np.ndarray | None = None


def heatmaps(model: Any, img: np.ndarray, crm_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """CRM and Grad-CAM (towards the TB class) of one (H, W) image in [0, 1]."""
    import torch

    from cxrbs.explain.crm import class_selective_relevance_map, grad_cam

    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    crm = class_selective_relevance_map(model, x, threshold=crm_threshold)
    target = 1 if int(getattr(model.fc, "out_features", 2)) > 1 else 0
    return crm, grad_cam(model, x, target)


def _model_analysis(layout: Layout, config: Mapping[str, Any], out: _Out, note: _Notes,
                    boxes_csv: Path | None) -> None:
    """Cluster scores and t-SNE, box scores and the first fold's relevance maps per TB set."""
    report_cfg = config.get("report") or {}
    boxes = _read_boxes(boxes_csv, note) if boxes_csv else None
    if not boxes_csv:
        note("relevance_maps",
             "no expert boxes configured (report.boxes_csv): localisation not scored")
    crm_threshold = float(report_cfg.get("crm_threshold", 0.1))
    for tb in _datasets(config, "tb"):
        for fold in _fold_data(layout, config, tb, note):
            out.fs_rows += _feature_space(fold, config, out, note)
            if boxes:
                out.box_rows += _box_rows(fold, boxes, crm_threshold, note)
            if fold.first:
                _crm_examples(layout, config, fold, boxes or {}, out, note)


def _read_boxes(path: Path, note: _Notes) -> dict[str, list[Box]]:
    from cxrbs.explain.crm import read_boxes_csv

    if not path.is_file():
        note("relevance_maps", f"box file {path} (report.boxes_csv) does not exist: boxes left out")
        return {}
    return {Path(k).stem: v for k, v in read_boxes_csv(path).items()}


def _fold_data(layout: Layout, config: Mapping[str, Any], tb: str,
               note: _Notes) -> Iterator[_FoldData]:
    """Yield each fold whose two variant models and image stacks exist; note what is missing.
    Images are shown to the models as they were trained (``cls.lung_crop``: cut to lung boxes)."""
    from cxrbs.cls.lung_crop import crop_settings, set_crop
    from cxrbs.cls.predict import fold_images
    from cxrbs.data.stacks import load_stack

    variants = list((config.get("cls") or {}).get("variants", VARIANTS))
    folds_csv = layout.folds(tb)
    stacks = {"baseline": layout.stack(tb), "bone_suppressed": layout.suppressed_stack(tb)}
    missing = [str(p) for p in (folds_csv, *stacks.values()) if not p.is_file()]
    if set(VARIANTS) - set(variants) or missing:
        why = (f"missing {', '.join(missing)}" if missing
               else "both variants are needed (cls.variants)")
        for sec in ("relevance_maps", "feature_space"):
            note(sec, f"{tb}: left out, {why}")
        return
    try:
        from cxrbs.cls import train as _cls_train  # noqa: F401 - checked before any work
        from cxrbs.core.device import select_device
    except ImportError as exc:  # the classification module is optional for figure-only installs
        for sec in ("relevance_maps", "feature_space"):
            note(sec, f"{tb}: left out, cxrbs.cls.train cannot be imported ({exc})")
        return
    folds = pd.read_csv(folds_csv, dtype={"patient_id": str})
    sizes = _original_sizes(layout.manifest(tb), folds)
    loaded = {v: load_stack(p) for v, p in stacks.items()}
    input_size = (config.get("cls") or {}).get("input_size")
    all_names = [Path(str(p)).stem for p in folds["image_path"]]
    crop = set_crop(crop_settings(config, tb), all_names)  # the whole set's boxes, as trained
    device = select_device("auto")  # a GPU where there is one: VGG-16 features of every fold
    fold_ids = sorted(int(f) for f in folds["fold"].unique())
    for k in fold_ids:
        paths = {v: layout.cls_fold_model(tb, v, k) for v in VARIANTS}
        if not all(p.is_file() for p in paths.values()):
            for sec in ("relevance_maps", "feature_space"):
                note(sec, f"{tb} fold {k}: a variant's model.pt is missing, fold left out")
            continue
        idx = np.flatnonzero(folds["fold"].to_numpy() == k)
        names = [all_names[j] for j in idx]
        boxes = None if crop is None else crop.boxes[idx]
        yield _FoldData(
            dataset=tb, fold=k, first=k == fold_ids[0],
            names=names,
            labels=folds["label"].to_numpy(int)[idx],
            image_paths=[str(p) for p in folds["image_path"].iloc[idx]],
            sizes=[sizes[j] for j in idx],
            images={v: fold_images(np.asarray(s[idx]), input_size, boxes)
                    for v, s in loaded.items()},
            models={v: _load_classifier(p, device) for v, p in paths.items()},
            crop_boxes=boxes,
        )


def _feature_space(fold: _FoldData, config: Mapping[str, Any], out: _Out,
                   note: _Notes) -> list[dict[str, Any]]:
    """Cluster scores of every fold; t-SNE coordinates of the first fold's held-out images."""
    from cxrbs.explain.feature_space import cluster_scores, extract_features, tsne_embedding

    feats = {v: extract_features(fold.models[v], fold.images[v]) for v in VARIANTS}
    scores = {v: cluster_scores(feats[v], fold.labels) for v in VARIANTS}
    rows = [{"dataset": fold.dataset, "variant": v, "fold": fold.fold, "n": len(fold.labels),
             **scores[v]} for v in VARIANTS]
    if fold.first:
        seed = int(config.get("seed", 0))
        try:
            embs = [tsne_embedding(feats[v], seed=seed) for v in VARIANTS]
        except CxrbsError as exc:
            note("feature_space", f"{fold.dataset}: no t-SNE ({exc})")
        else:
            for v, emb in zip(VARIANTS, embs, strict=True):
                out.tsne_rows += [{"dataset": fold.dataset, "fold": fold.fold, "variant": v,
                                   "image": fold.names[i], "label": int(fold.labels[i]),
                                   "x": float(emb[i, 0]), "y": float(emb[i, 1])}
                                  for i in range(len(fold.names))]
    return rows


def _original_sizes(manifest: Path, folds: pd.DataFrame) -> list[tuple[int, int] | None]:
    """(height, width) of each folds row's original, as the data stage recorded it."""
    cols = ["index", "original_height", "original_width"]
    if not manifest.is_file():
        return [None] * len(folds)
    table = pd.read_csv(manifest, usecols=lambda c: c in cols)
    if not set(cols) <= set(table.columns):
        return [None] * len(folds)
    by_index = table.set_index("index")
    out: list[tuple[int, int] | None] = []
    for i in folds["index"]:
        row = by_index.loc[i] if i in by_index.index else None
        out.append(None if row is None else (int(row["original_height"]),
                                             int(row["original_width"])))
    return out


def _scaled_boxes(fold: _FoldData, i: int, boxes: Mapping[str, list[Box]]) -> list[Box] | None:
    """Boxes of image i in stack pixels (stacks are resized without keeping the aspect ratio)."""
    found = boxes.get(fold.names[i])
    if not found:
        return None
    size = fold.sizes[i]
    if size is None:  # an older manifest: the original's header
        from cxrbs.data.io import image_info

        info = image_info(fold.image_paths[i])
        size = (int(info["height"]), int(info["width"]))
    side = fold.images["baseline"].shape[-1]
    if fold.crop_boxes is not None:  # the shown image is the lung box, stretched to the side
        top, left, bottom, right = (float(v) for v in fold.crop_boxes[i])
        fx, fy = side / ((right - left) * size[1]), side / ((bottom - top) * size[0])
        x0, y0 = left * size[1], top * size[0]
        return [((x - x0) * fx, (y - y0) * fy, w * fx, h * fy) for x, y, w, h in found]
    sx, sy = side / float(size[1]), side / float(size[0])
    return [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in found]


def _box_rows(fold: _FoldData, boxes: Mapping[str, list[Box]], crm_threshold: float,
              note: _Notes) -> list[dict[str, Any]]:
    from cxrbs.explain.crm import mass_inside_boxes

    rows = []
    for i, name in enumerate(fold.names):
        if name not in boxes:
            continue
        try:
            scaled = _scaled_boxes(fold, i, boxes)
        except CxrbsError as exc:
            note("relevance_maps", f"{fold.dataset} {name}: boxes not scored ({exc})")
            continue
        for variant in VARIANTS:
            crm, cam = heatmaps(fold.models[variant], fold.images[variant][i], crm_threshold)
            for method, heat in (("crm", crm), ("grad_cam", cam)):
                rows.append({"dataset": fold.dataset, "variant": variant, "fold": fold.fold,
                             "image": name, "method": method, "n_boxes": len(scaled or []),
                             "mass_inside": mass_inside_boxes(heat, scaled or [])})
    return rows


def _crm_examples(layout: Layout, config: Mapping[str, Any], fold: _FoldData,
                  boxes: Mapping[str, list[Box]], out: _Out, note: _Notes) -> None:
    """The fold's TB cases, right and wrong by the bone-suppressed model, with both models' maps."""
    report_cfg = config.get("report") or {}
    threshold = float((config.get("cls") or {}).get("threshold", 0.5))
    probs = {}
    for v in VARIANTS:
        p = layout.cls_fold_predictions(fold.dataset, v, fold.fold)
        if not p.is_file():
            note("relevance_maps", f"{fold.dataset}: {p} is missing, no relevance-map figure")
            return
        table = pd.read_csv(p, dtype={"image": str, "patient": str})
        deep = table[table["model"] == "deep"].set_index("image")["probability"]
        probs[v] = np.array([float(deep.get(n, np.nan)) for n in fold.names])
    cases = select_crm_cases(fold.labels, probs["bone_suppressed"], threshold,
                             int(report_cfg.get("crm_examples", 4)))
    if not cases:
        note("relevance_maps",
             f"{fold.dataset}: no TB case among the fold-{fold.fold} held-out images")
        return
    crm_threshold = float(report_cfg.get("crm_threshold", 0.1))
    maps: dict[str, list[np.ndarray]] = {f"{k}_{v}": [] for k in ("crm", "cam") for v in VARIANTS}
    shown: list[list[float]] = []  # (case, x, y, w, h) in pixels of the shown images
    for c, (i, correct) in enumerate(cases):
        for v in VARIANTS:
            crm, cam = heatmaps(fold.models[v], fold.images[v][i], crm_threshold)
            maps[f"crm_{v}"].append(crm)
            maps[f"cam_{v}"].append(cam)
        out.case_rows.append({"dataset": fold.dataset, "fold": fold.fold, "image": fold.names[i],
                              "correct": bool(correct), "p_baseline": probs["baseline"][i],
                              "p_bone_suppressed": probs["bone_suppressed"][i]})
        try:
            shown += [[float(c), *box] for box in _scaled_boxes(fold, i, boxes) or []]
        except CxrbsError:
            pass
    idx = [i for i, _ in cases]
    tb = fold.dataset
    for v in VARIANTS:
        out.crm_arrays[f"image_{v}_{tb}"] = fold.images[v][idx]
        out.crm_arrays[f"crm_{v}_{tb}"] = np.stack(maps[f"crm_{v}"])
        out.crm_arrays[f"cam_{v}_{tb}"] = np.stack(maps[f"cam_{v}"])
    out.crm_arrays[f"boxes_{tb}"] = np.asarray(shown, dtype=np.float64).reshape(-1, 5)
