"""Measured instead of described (issue 26, item 4): per TB image and arm, how much bone the image
still carries and how much of the classifier's relevance falls inside the lung fields; per arm,
how well the two classes separate in the classifier's own features, with confidence intervals.

Why these three: the paper shows pictures (CRM maps, t-SNE) and argues that suppression removes
bones and moves attention into the lungs. Numbers let a reader check both claims, and the control
arm (same change energy, bones kept) tells "bone removed" from "image changed":

* **bone left** - the selected bone-suppression model's own bone estimate ``x - f(x)`` of each
  arm's image, as RMS inside the lung mask (stretched-image units). Suppressed images should
  carry clearly less than the originals; control images about as much.
* **relevance in lungs** - the share of the class-selective relevance map (CRM, towards TB) of the
  out-of-fold classifier of the arm that lies inside the lung mask, beside the mask's own share of
  the image (what a map spread evenly would score).
* **silhouette** - per held-out image, the silhouette of its class in the pooled deep features of
  the fold model that did not train on it; the arm's score is the mean over images.

Lung masks (``datasets.<tb>.lung_masks``: PNGs with the images' file stems, >= 128 inside) exist
for only some images (566 of 662 Shenzhen): images without one are left out of the two lung
measures and counted. Paired arm differences use the Wilcoxon signed-rank test with its
Hodges-Lehmann interval (``cxrbs.bs.paired_stats``), Holm-adjusted over the whole secondary family
here; the silhouette's interval is a percentile bootstrap over images (descriptive: per-image
silhouettes of one fold depend on each other). None of these is the study's primary endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.errors import CxrbsError
from cxrbs.data.lung_masks import read_masks

log = logging.getLogger(__name__)

ARMS = ("baseline", "bone_suppressed", "control")
PER_IMAGE_COLUMNS = ["dataset", "image", "label", "fold", "arm", "has_mask", "lung_fraction",
                     "bone_rms", "relevance_in_lungs", "silhouette"]
TEST_COLUMNS = ["dataset", "measure", "comparison", "n", "mean_a", "mean_b", "difference",
                "ci_low", "ci_high", "p_value", "p_holm", "test"]
SILHOUETTE_COLUMNS = ["dataset", "arm", "n", "silhouette", "ci_low", "ci_high",
                      "difference_vs_baseline", "difference_ci_low", "difference_ci_high",
                      "n_boot"]
#: measure -> what it is (the report names the measures with these words)
MEASURES = {
    "bone_rms": "bone left: RMS of the BS model's bone estimate inside the lung mask",
    "relevance_in_lungs": "share of the CRM (towards TB) inside the lung mask",
}
COMPARISONS = (("bone_suppressed", "baseline"), ("control", "baseline"),
               ("bone_suppressed", "control"))
TEST_NAME = "Wilcoxon signed-rank, Hodges-Lehmann 95% CI, Holm over this table"


@dataclass
class DatasetInputs:
    """One TB set: its folds file, a prepared stack per arm and each arm's repeat-0 fold models."""

    name: str
    folds_csv: Path
    stacks: dict[str, Path]
    models: dict[str, dict[int, Path]]
    mask_dir: Path | None = None
    #: ``crop_settings`` of this set when its classifiers see lung crops (``cls.lung_crop``)
    lung_crop: Mapping[str, Any] | None = None
    arms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arms = [a for a in ARMS if a in self.stacks]
        if "baseline" not in self.arms or len(self.arms) < 2:
            raise CxrbsError(f"{self.name}: the arm measures need the baseline and at least one "
                             f"other arm (cls.variants), got {sorted(self.stacks)}")


# ---------------------------------------------------------------------------------------------
# per-image measures
# ---------------------------------------------------------------------------------------------
def bone_rms(images: np.ndarray, predicted: np.ndarray, masks: Sequence[np.ndarray | None]
             ) -> np.ndarray:
    """RMS of ``images - predicted`` (the model's bone estimate) inside each mask; NaN without."""
    out = np.full(len(images), np.nan)
    for i, mask in enumerate(masks):
        if mask is not None and mask.any():
            bone = np.asarray(images[i], np.float64) - np.asarray(predicted[i], np.float64)
            out[i] = float(np.sqrt(np.mean(bone[mask] ** 2)))
    return out


def share_inside(heatmap: np.ndarray, mask: np.ndarray | None) -> float:
    """Share of a non-negative map's mass inside ``mask``; NaN without mask or relevance."""
    if mask is None:
        return float("nan")
    total = float(np.sum(heatmap))
    if not np.isfinite(total) or total <= 0:
        return float("nan")
    return float(np.sum(heatmap[mask]) / total)


def per_image_silhouette(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette of each image's class (sklearn); NaN where undefined (one class, < 3 images)."""
    from sklearn.metrics import silhouette_samples

    labels = np.asarray(labels)
    n_labels = len(np.unique(labels))
    if len(features) < 3 or not 2 <= n_labels <= len(features) - 1:
        return np.full(len(labels), np.nan)
    return np.asarray(silhouette_samples(np.asarray(features, np.float64), labels), np.float64)


def _resize_masks(masks: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    from skimage.transform import resize

    return {k: np.asarray(resize(m.astype(np.float64), (size, size), order=1) >= 0.5)
            for k, m in masks.items()}


def measure_dataset(inp: DatasetInputs, bs_model: Any, load_classifier: Any, *,
                    input_size: int | None, crm_threshold: float = 0.1,
                    progress: bool = True) -> pd.DataFrame:
    """One row per image and arm (PER_IMAGE_COLUMNS), each image scored by the fold model of its
    arm that did not train on it; ``load_classifier(path)`` returns a model in eval mode."""
    import torch
    from tqdm import tqdm

    from cxrbs.bs.predict import predict_images
    from cxrbs.cls.lung_crop import crop_masks, set_crop
    from cxrbs.cls.predict import fold_images
    from cxrbs.data.preprocess import from_uint16
    from cxrbs.data.stacks import load_stack
    from cxrbs.explain.crm import class_selective_relevance_map
    from cxrbs.explain.feature_space import extract_features

    folds = pd.read_csv(inp.folds_csv, dtype={"patient_id": str})
    names = [Path(str(p)).stem for p in folds["image_path"]]
    stacks = {a: load_stack(inp.stacks[a]) for a in inp.arms}
    n = len(folds)
    for arm, stack in stacks.items():
        if stack.shape[0] != n:
            raise CxrbsError(f"{inp.stacks[arm]} holds {stack.shape[0]} images but "
                             f"{inp.folds_csv} lists {n}: rerun the workflow to rebuild it")
    side = int(stacks["baseline"].shape[-1])
    masks = read_masks(inp.mask_dir, names, side)
    crop = set_crop(inp.lung_crop, names)  # the whole set's boxes, as its models were trained
    cls_side = int(input_size) if input_size else side
    cls_masks = _resize_masks(masks, cls_side) if cls_side != side else masks
    log.info("%s: %d of %d images have a lung mask", inp.name, len(masks), n)
    rows: list[dict[str, Any]] = []
    fold_ids = sorted(int(f) for f in folds["fold"].unique())
    steps = tqdm(total=len(inp.arms) * len(fold_ids), desc=f"arm measures {inp.name}",
                 disable=not progress, unit="fold")
    for arm in inp.arms:
        for k in fold_ids:
            idx = np.flatnonzero(folds["fold"].to_numpy() == k)
            path = inp.models[arm].get(k)
            if path is None or not Path(path).is_file():
                raise CxrbsError(f"{inp.name} {arm} fold {k}: no fold model ({path}): rerun the "
                                 "workflow so fine-tuning finishes")
            images = from_uint16(np.asarray(stacks[arm][idx, 0]))
            fold_masks = [masks.get(names[i]) for i in idx]
            bone = bone_rms(images, predict_images(bs_model, images, batch_size=8), fold_masks)
            # the classifier's view (lung crops where it trained on them), masks cut alike
            boxes = None if crop is None else crop.boxes[idx]
            small = fold_images(images, input_size, boxes)
            view_masks = ([cls_masks.get(names[i]) for i in idx] if boxes is None
                          else crop_masks(fold_masks, boxes, int(small.shape[-1])))
            model = load_classifier(Path(path))
            sil = per_image_silhouette(extract_features(model, small),
                                       folds["label"].to_numpy(int)[idx])
            for j, i in enumerate(idx):
                x = torch.from_numpy(np.ascontiguousarray(small[j], dtype=np.float32))[None, None]
                crm = class_selective_relevance_map(model, x, threshold=crm_threshold)
                mask = view_masks[j]
                rows.append({
                    "dataset": inp.name, "image": names[i], "label": int(folds["label"].iloc[i]),
                    "fold": k, "arm": arm, "has_mask": mask is not None,
                    "lung_fraction": float(mask.mean()) if mask is not None else np.nan,
                    "bone_rms": float(bone[j]), "relevance_in_lungs": share_inside(crm, mask),
                    "silhouette": float(sil[j])})
            steps.update()
    steps.close()
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


# ---------------------------------------------------------------------------------------------
# arm comparisons
# ---------------------------------------------------------------------------------------------
def _wide(per_image: pd.DataFrame, dataset: str, measure: str) -> pd.DataFrame:
    sub = per_image[per_image["dataset"] == dataset]
    return sub.pivot(index="image", columns="arm", values=measure)


def arm_tests(per_image: pd.DataFrame) -> pd.DataFrame:
    """Paired arm differences of each lung measure per data set (TEST_COLUMNS), Holm over all."""
    from cxrbs.bs.paired_stats import paired_difference_test
    from cxrbs.stats import holm

    rows = []
    for dataset in sorted(per_image["dataset"].unique()):
        for measure in MEASURES:
            wide = _wide(per_image, dataset, measure)
            for a, b in COMPARISONS:
                if a not in wide or b not in wide:
                    continue
                res = paired_difference_test(wide[a].to_numpy(), wide[b].to_numpy())
                ok = wide[a].notna() & wide[b].notna()
                rows.append({"dataset": dataset, "measure": measure, "comparison": f"{a} − {b}",
                             "n": res["n"], "mean_a": float(wide[a][ok].mean()),
                             "mean_b": float(wide[b][ok].mean()),
                             "difference": res["difference"], "ci_low": res["ci_low"],
                             "ci_high": res["ci_high"], "p_value": res["p_value"],
                             "test": TEST_NAME})
    out = pd.DataFrame(rows, columns=[c for c in TEST_COLUMNS if c != "p_holm"])
    out.insert(TEST_COLUMNS.index("p_holm"), "p_holm", holm(out["p_value"].to_numpy(float))
               if len(out) else [])
    return out[TEST_COLUMNS]


def silhouette_table(per_image: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean per-image silhouette per data set and arm, with percentile-bootstrap 95% CIs (images
    resampled within each label, the same resample for every arm, so differences are paired)."""
    if n_boot < 1:
        raise CxrbsError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in sorted(per_image["dataset"].unique()):
        wide = _wide(per_image, dataset, "silhouette").dropna()
        labels = (per_image[per_image["dataset"] == dataset].drop_duplicates("image")
                  .set_index("image")["label"].reindex(wide.index).to_numpy())
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        draws = np.stack([np.concatenate([rng.choice(g, size=len(g)) for g in groups])
                          for _ in range(n_boot)]) if len(wide) else np.zeros((0, 0), int)
        for arm in wide.columns:
            values = wide[arm].to_numpy(float)
            boot = values[draws].mean(axis=1) if len(values) else np.array([np.nan])
            row = {"dataset": dataset, "arm": arm, "n": len(values),
                   "silhouette": float(values.mean()) if len(values) else np.nan,
                   "ci_low": float(np.quantile(boot, 0.025)),
                   "ci_high": float(np.quantile(boot, 0.975)), "n_boot": n_boot,
                   "difference_vs_baseline": np.nan, "difference_ci_low": np.nan,
                   "difference_ci_high": np.nan}
            if arm != "baseline" and "baseline" in wide and len(values):
                diff = values - wide["baseline"].to_numpy(float)
                dboot = diff[draws].mean(axis=1)
                row.update(difference_vs_baseline=float(diff.mean()),
                           difference_ci_low=float(np.quantile(dboot, 0.025)),
                           difference_ci_high=float(np.quantile(dboot, 0.975)))
            rows.append(row)
    return pd.DataFrame(rows, columns=SILHOUETTE_COLUMNS)


# ---------------------------------------------------------------------------------------------
# the rule's job
# ---------------------------------------------------------------------------------------------
def run_arm_measures(layout: Any, tb_sets: Sequence[str], variants: Sequence[str],
                     lung_masks: Mapping[str, Path | None], *, bs_checkpoint: Path,
                     out_per_image: Path, out_tests: Path, out_silhouette: Path,
                     input_size: int | None, crm_threshold: float, n_boot: int, seed: int,
                     lung_crop: Mapping[str, Mapping[str, Any] | None] | None = None,
                     progress: bool = True) -> pd.DataFrame:
    """Every TB set's per-image measures, the paired arm tests and the silhouette table, written
    whole (atomically) or not at all; ``layout`` (a :class:`cxrbs.core.layout.Layout`) locates
    the stacks and repeat-0 fold models. Returns the per-image table."""
    from cxrbs.bs.predict import load_bs_model
    from cxrbs.cls.train import load_classifier
    from cxrbs.core.atomic import write_csv

    bs_model = load_bs_model(bs_checkpoint)[0]
    frames = []
    for tb in tb_sets:
        folds = pd.read_csv(layout.folds(tb), usecols=["fold"])
        inp = DatasetInputs(
            name=tb, folds_csv=layout.folds(tb),
            stacks={v: layout.variant_stack(tb, v) for v in variants},
            models={v: {int(k): layout.cls_fold_model(tb, v, int(k))
                        for k in sorted(folds["fold"].unique())} for v in variants},
            mask_dir=lung_masks.get(tb), lung_crop=(lung_crop or {}).get(tb))
        if inp.mask_dir is None:
            log.info("%s: no lung masks (datasets.%s.lung_masks): lung measures left out", tb, tb)
        frames.append(measure_dataset(inp, bs_model, lambda p: load_classifier(p)[0],
                                      input_size=input_size, crm_threshold=crm_threshold,
                                      progress=progress))
    per_image = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=PER_IMAGE_COLUMNS)
    tests = arm_tests(per_image)
    silhouette = silhouette_table(per_image, n_boot=n_boot, seed=seed)
    write_csv(out_per_image, per_image)
    write_csv(out_tests, tests)
    write_csv(out_silhouette, silhouette)
    return per_image
