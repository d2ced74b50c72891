"""The classification stage as the workflow runs it: pretrain on a CXR collection, fine-tune per
TB set x variant x fold, pool the out-of-fold predictions, and compare the two variants.

Both variants read the same ``folds.csv`` and use the same seeds, so the comparison is paired.
A HOG + logistic-regression floor is trained on exactly the same splits and reported beside the
deep model: a deep model that loses to it says nothing about bone suppression.
"""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.atomic import write_csv
from cxrbs.cls.lung_crop import set_crop
from cxrbs.cls.predict import fold_images, predict_images
from cxrbs.cls.train import ClsTrainConfig, load_classifier, train_classifier
from cxrbs.cls.metrics import metrics_with_ci
from cxrbs.data.stacks import load_stack, read_manifest
from cxrbs.core.errors import CxrbsError
from cxrbs.cls.hog_floor import train_hog_floor
from cxrbs.data.splits import patient_split
from cxrbs.cls.compare import CLAIMED_EFFECT, EQUIVALENCE_MARGIN, PRIMARY_ENDPOINT, compare_variants
from cxrbs.core.config import HIGH_PCT, LOW_PCT

log = logging.getLogger(__name__)

PRED_COLUMNS = ["dataset", "variant", "model", "fold", "image", "patient", "label", "probability"]


def load_labelled_sets(manifests: list[Path], stacks: list[Path]) -> tuple[np.ndarray, pd.DataFrame]:
    """Concatenate labelled sets (N,1,S,S uint16); patient ids are prefixed by the data set name."""
    arrays, frames = [], []
    for man, stk in zip(manifests, stacks, strict=True):
        frame = read_manifest(man)
        if frame["label"].isna().any():
            raise CxrbsError(f"{man} has images without a label; classification needs labels 0/1")
        name = Path(man).parent.name
        arrays.append(np.asarray(load_stack(stk)[:, :1]))
        frames.append(frame.assign(dataset=name, patient_key=name + ":" + frame["patient_id"].astype(str)))
    return np.concatenate(arrays), pd.concat(frames, ignore_index=True)


def _image_names(frame: pd.DataFrame) -> list[str]:
    return [Path(str(p)).stem for p in frame["image_path"]]


def pretrain(manifests: list[Path], stacks: list[Path], *, model: str, model_kwargs: dict[str, Any],
             train_cfg: dict[str, Any], seed: int, outdir: Path, weights: Path | None,
             threads: int | None, hog_floor: bool, input_size: int | None = None,
             low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT) -> pd.DataFrame:
    """Stage 1: CXR-modality pretraining (normal vs abnormal) with a patient-level validation split."""
    images, frame = load_labelled_sets(manifests, stacks)
    stack_size = int(images.shape[-1])
    images = fold_images(images, input_size)
    labels = frame["label"].astype(int).to_numpy()
    patients = frame["patient_key"].to_numpy()
    cfg = ClsTrainConfig.from_dict(train_cfg, seed=seed, threads=threads)
    is_val = patient_split(patients, val_fraction=cfg.val_fraction, seed=seed, labels=labels)
    train_classifier(model, model_kwargs, images, labels, patients, cfg, outdir,
                     torchvision_weights=weights, val_mask=is_val, stage="pretrain",
                     low_pct=low_pct, high_pct=high_pct, stack_size=stack_size)
    deep, _ = load_classifier(outdir / "model.pt")
    rows = _prediction_rows(frame[is_val], "pretrain", "baseline", "deep", "val",
                            predict_images(deep, images[is_val]))
    if hog_floor:
        floor, _ = train_hog_floor(images, labels, patients, val_mask=is_val, seed=seed)
        rows = pd.concat([rows, _prediction_rows(frame[is_val], "pretrain", "baseline", "hog_floor",
                                                 "val", floor.predict_proba(images[is_val]))])
    write_csv(outdir / "predictions.csv", rows)
    return rows


def _prediction_rows(frame: pd.DataFrame, dataset: str, variant: str, model: str, fold: Any,
                     prob: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": dataset, "variant": variant, "model": model, "fold": fold,
        "image": _image_names(frame), "patient": frame["patient_id"].astype(str).to_numpy(),
        "label": frame["label"].astype(int).to_numpy(), "probability": prob,
    }, columns=PRED_COLUMNS)


def finetune_fold(stack_path: Path, folds_path: Path, *, dataset: str, variant: str, fold: int,
                  init_checkpoint: Path, train_cfg: dict[str, Any], seed: int, outdir: Path,
                  threads: int | None, hog_floor: bool, input_size: int | None = None,
                  low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT,
                  lung_crop: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Stage 2: fine-tune on the other folds (inner patient-level validation), predict fold ``fold``.

    ``lung_crop`` ({"mask_dir", "margin"}, ``cls.lung_crop``): every image, training and held
    out, is cut to its lung box first (``cxrbs.cls.lung_crop``); the HOG floor sees the same crops.
    """
    folds = pd.read_csv(folds_path, dtype={"patient_id": str})
    stack = load_stack(stack_path)
    crop = set_crop(lung_crop, _image_names(folds))
    if crop is not None:
        log.info("%s: lung crop from %d of %d masks", dataset, int(crop.has_mask.sum()), len(folds))
    images = fold_images(stack, input_size, None if crop is None else crop.boxes)
    if len(images) != len(folds):
        raise CxrbsError(f"{stack_path} has {len(images)} images but {folds_path} lists {len(folds)}")
    held_out = folds["fold"].to_numpy() == fold
    if not held_out.any():
        raise CxrbsError(f"fold {fold} is empty in {folds_path}")
    train = folds[~held_out]
    labels = train["label"].astype(int).to_numpy()
    patients = train["patient_id"].astype(str).to_numpy()
    cfg = ClsTrainConfig.from_dict(train_cfg, seed=seed + fold, threads=threads)
    name, kwargs = _model_spec(init_checkpoint)
    train_classifier(name, kwargs, images[~held_out], labels, patients, cfg, outdir,
                     init_checkpoint=init_checkpoint, stage="finetune", low_pct=low_pct,
                     high_pct=high_pct, stack_size=int(stack.shape[-1]),
                     lung_crop=None if crop is None else crop.record())
    deep, _ = load_classifier(outdir / "model.pt")
    test = folds[held_out]
    rows = _prediction_rows(test, dataset, variant, "deep", fold,
                            predict_images(deep, images[held_out]))
    if hog_floor:
        is_val = patient_split(patients, val_fraction=cfg.val_fraction, seed=cfg.seed, labels=labels)
        floor, _ = train_hog_floor(images[~held_out], labels, patients, val_mask=is_val, seed=cfg.seed)
        rows = pd.concat([rows, _prediction_rows(test, dataset, variant, "hog_floor", fold,
                                                 floor.predict_proba(images[held_out]))])
    write_csv(outdir / "predictions.csv", rows)
    return rows


def _model_spec(checkpoint: Path) -> tuple[str, dict[str, Any]]:
    """Fine-tuning rebuilds exactly the pretrained architecture, whatever the config says now."""
    _, meta = load_classifier(checkpoint)
    return str(meta["model_name"]), dict(meta.get("model_kwargs") or {})


def evaluate(prediction_files: list[Path], *, threshold: float, n_boot: int, seed: int) -> pd.DataFrame:
    """Per fold and pooled: the seven metrics with 95% CIs, per data set, variant and model.

    Column ``predictions`` says which fine-tuning repeat is scored ("repeat 0": the workflow
    passes repeat 0 only, while comparison.csv's decisive rows use the seed-averaged predictions
    and say so in the same column).
    """
    preds = pd.concat([pd.read_csv(p, dtype={"patient": str}).assign(
        predictions=f"repeat {_repeat_of(Path(p))}") for p in prediction_files], ignore_index=True)
    out = []
    for (dataset, variant, model), group in preds.groupby(["dataset", "variant", "model"], sort=True):
        parts = [(str(f), g) for f, g in group.groupby("fold", sort=True)]
        if group["fold"].nunique() > 1:
            parts.append(("pooled", group))
        for fold, g in parts:
            table = metrics_with_ci(g["label"].to_numpy(), g["probability"].to_numpy(),
                                    g["patient"].to_numpy(), threshold=threshold, n_boot=n_boot, seed=seed)
            out.append(table.assign(dataset=dataset, variant=variant, model=model, fold=fold,
                                    n=len(g), predictions=", ".join(sorted(set(
                                        g["predictions"].astype(str))))))
    cols = ["dataset", "variant", "model", "fold", "n", "metric", "value", "ci_low", "ci_high",
            "ci_method", "predictions"]
    return pd.concat(out, ignore_index=True)[cols]


def _repeat_of(path: Path) -> int:
    name = path.parent.parent.name
    return int(name[len("repeat"):]) if name.startswith("repeat") and name[6:].isdigit() else 0


def compare(prediction_files: list[Path], *, threshold: float,
            primary_endpoint: str = PRIMARY_ENDPOINT, equivalence_margin: float | None = None,
            claimed_effect: float | None = None, inner_val_fraction: float | None = None,
            seed_variance: str | None = None) -> pd.DataFrame:
    """Baseline vs bone-suppressed on the deep model's pooled out-of-fold predictions, per data set.

    Files under ``.../<variant>/repeat<r>/fold<k>/`` are fine-tuning repeat r (other seed, same
    folds); all others are repeat 0. ``inner_val_fraction``: the fine-tuning's inner validation
    split (cls.finetune.val_fraction), for the Nadeau–Bengio test/train ratio.
    """
    preds = pd.concat([pd.read_csv(p, dtype={"patient": str}).assign(repeat=_repeat_of(Path(p)))
                       for p in prediction_files], ignore_index=True)
    deep = preds[(preds["model"] == "deep") & (preds["dataset"] != "pretrain")]
    if deep["variant"].nunique() < 2:
        raise CxrbsError("the comparison needs both variants (cls.variants: [baseline, bone_suppressed])")
    return compare_variants(
        deep.drop(columns=["model"]), threshold=threshold, primary_endpoint=primary_endpoint,
        equivalence_margin=EQUIVALENCE_MARGIN if equivalence_margin is None else equivalence_margin,
        claimed_effect=CLAIMED_EFFECT if claimed_effect is None else claimed_effect,
        inner_val_fraction=inner_val_fraction,
        seed_variance="full" if seed_variance is None else seed_variance)
