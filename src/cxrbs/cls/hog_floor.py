"""HOG + logistic regression: the shallow floor a deep classifier must beat.

Measured on ChestX-ray8 normal vs pneumonia (STUDY.md): HOG features at 128² with a logistic
regression reach a validation AUC of about 0.87, while VGG-16 from random weights stalls near
0.79. A deep model reported without this floor beside it may look useful when it is not.

The fitted model is saved as plain arrays (.npz, no pickle), so loading a file cannot run code and
does not depend on the scikit-learn version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from skimage.feature import hog
from skimage.transform import resize
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrbs.core.atomic import atomic_path
from cxrbs.cls.metrics import binary_metrics
from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import from_uint16
from cxrbs.data.splits import check_val_mask, patient_split

__all__ = ["HogFloor", "hog_features", "train_hog_floor"]

_FORMAT = "cxrbs-hog-floor-1"


def _image01(images: np.ndarray, i: int) -> np.ndarray:
    """Image i as 2-D float in [0,1]; converts one image at a time to spare memory."""
    img = images[i]
    img = from_uint16(img) if img.dtype == np.uint16 else np.asarray(img, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=0) if img.shape[0] == 3 else img[0]
    return img


def _check_stack(images: np.ndarray) -> None:
    shape_ok = images.ndim == 3 or (images.ndim == 4 and images.shape[1] in (1, 3))
    dtype_ok = images.dtype == np.uint16 or np.issubdtype(images.dtype, np.floating)
    if not (shape_ok and dtype_ok) or images.shape[0] == 0:
        raise CxrbsError(
            f"HOG floor images must be (N,H,W) float in [0,1] or a uint16 (N,1,H,W) stack; "
            f"got shape {images.shape}, dtype {images.dtype}: rebuild the prepared data"
        )


def hog_features(
    images: np.ndarray,
    *,
    size: int = 128,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (8, 8),
    cells_per_block: tuple[int, int] = (2, 2),
) -> np.ndarray:
    """(N, F) float32 HOG descriptors of images resized to ``size``² (F = 8100 at the defaults)."""
    _check_stack(images)
    rows = []
    for i in range(images.shape[0]):
        img = _image01(images, i)
        if img.shape != (size, size):
            img = resize(img, (size, size), order=1, anti_aliasing=True, preserve_range=True)
        rows.append(
            hog(
                img,
                orientations=orientations,
                pixels_per_cell=tuple(pixels_per_cell),
                cells_per_block=tuple(cells_per_block),
                block_norm="L2-Hys",
                feature_vector=True,
            ).astype(np.float32)
        )
    return np.stack(rows)


class HogFloor:
    """Standardised HOG features -> class-balanced L2 logistic regression.

    Strong regularisation (C=0.01) because there are thousands of features for hundreds of
    images; class_weight="balanced" matches the deep model's class-balanced loss.
    """

    def __init__(
        self,
        *,
        C: float = 0.01,
        max_iter: int = 2000,
        size: int = 128,
        orientations: int = 9,
        pixels_per_cell: tuple[int, int] = (8, 8),
        cells_per_block: tuple[int, int] = (2, 2),
    ) -> None:
        if not C > 0:
            raise CxrbsError(f"HOG floor C must be a positive number, got {C}")
        self.params: dict[str, Any] = {
            "C": float(C),
            "max_iter": int(max_iter),
            "size": int(size),
            "orientations": int(orientations),
            "pixels_per_cell": [int(v) for v in pixels_per_cell],
            "cells_per_block": [int(v) for v in cells_per_block],
        }
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def features(self, images: np.ndarray) -> np.ndarray:
        p = self.params
        return hog_features(
            images,
            size=p["size"],
            orientations=p["orientations"],
            pixels_per_cell=tuple(p["pixels_per_cell"]),
            cells_per_block=tuple(p["cells_per_block"]),
        )

    def fit_features(self, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> HogFloor:
        """Fit on precomputed features (train_hog_floor computes them once for both sides)."""
        y = np.asarray(labels)
        if y.shape != (x.shape[0],) or set(np.unique(y).tolist()) != {0, 1}:
            raise CxrbsError(
                f"HOG floor labels must be one 0/1 value per image with both classes present; "
                f"got shape {y.shape}, values {np.unique(y)[:5].tolist()}"
            )
        pipe = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=self.params["C"],
                max_iter=self.params["max_iter"],
                class_weight="balanced",
                random_state=seed,
            ),
        )
        pipe.fit(x, y)
        scaler, lr = pipe[0], pipe[-1]
        self.mean_ = scaler.mean_.astype(np.float64)
        self.scale_ = scaler.scale_.astype(np.float64)
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> HogFloor:
        return self.fit_features(self.features(images), labels, seed)

    def predict_proba_features(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) from features; plain numpy, so a loaded model predicts identically."""
        if self.coef_ is None or self.mean_ is None or self.scale_ is None:
            raise CxrbsError("the HOG floor is not fitted: call fit() or HogFloor.load() first")
        if x.ndim != 2 or x.shape[1] != self.coef_.size:
            raise CxrbsError(
                f"HOG features have shape {x.shape}, the model expects {self.coef_.size} per "
                "image: use the same size and HOG settings as in training"
            )
        z = ((np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_
        return expit(z + self.intercept_)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.predict_proba_features(self.features(images))

    def save(self, path: str | Path) -> None:
        if self.coef_ is None:
            raise CxrbsError(f"cannot save an unfitted HOG floor to {path}: fit it first")
        assert self.mean_ is not None and self.scale_ is not None  # set together with coef_
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                format=np.array(_FORMAT),
                params=np.array(json.dumps(self.params)),
                mean=self.mean_,
                scale=self.scale_,
                coef=self.coef_,
                intercept=np.array(self.intercept_),
            )

    @classmethod
    def load(cls, path: str | Path) -> HogFloor:
        path = Path(path)
        if not path.is_file():
            raise CxrbsError(f"HOG floor model {path} does not exist: run its training step first")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["format"]) != _FORMAT:
                    raise ValueError(f"format {npz['format']}, expected {_FORMAT}")
                model = cls(**json.loads(str(npz["params"])))
                model.mean_, model.scale_ = npz["mean"], npz["scale"]
                model.coef_, model.intercept_ = npz["coef"], float(npz["intercept"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CxrbsError(
                f"cannot read HOG floor model {path} ({exc}): delete it and train again"
            ) from exc
        return model


def train_hog_floor(
    images: np.ndarray,
    labels: np.ndarray,
    patient_ids: np.ndarray,
    *,
    val_mask: np.ndarray | None = None,
    seed: int,
    C: float = 0.01,
    val_fraction: float = 0.1,
    size: int = 128,
) -> tuple[HogFloor, dict[str, Any]]:
    """Fit on the training side of a patient-level split; report the validation metrics.

    Pass the deep model's ``val_mask`` so floor and deep model are scored on the same patients.
    """
    y = np.asarray(labels)
    ids = np.asarray(patient_ids)
    if val_mask is None:
        val = patient_split(ids, val_fraction=val_fraction, seed=seed, labels=y)
    else:
        val = check_val_mask(np.asarray(val_mask, dtype=bool), ids)
    floor = HogFloor(C=C, size=size)
    x = floor.features(images)
    floor.fit_features(x[~val], y[~val], seed)
    prob = floor.predict_proba_features(x[val])
    metrics = binary_metrics(y[val], prob)
    report = {f"val_{k}": v for k, v in metrics.items()}
    report.update(n_train=int((~val).sum()), n_val=int(val.sum()), **floor.params)
    return floor, report
