"""What a classifier run is built from: checked labels, the validation split, the model (random,
ImageNet or a pre-trained checkpoint), class weights and the optimiser."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cxrbs.cls.config import ClsTrainConfig
from cxrbs.core.errors import CxrbsError
from cxrbs.data.splits import check_val_mask, patient_split
from cxrbs.models import create_model, list_models, load_torchvision_weights, model_kind
from cxrbs.models.checkpoint import DEFAULT_CLASS_NAMES, load_checkpoint, read_checkpoint

log = logging.getLogger("cxrbs.cls.train")  # its messages are the training step's


def _plain(obj: Any) -> Any:
    """Tuples to lists (as YAML gives them), so kwargs compare and reload alike."""
    return json.loads(json.dumps(obj))



def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.isin(y, (0, 1)).all():
        raise CxrbsError(
            f"classifier labels must be one 0/1 value per image ({n}); got shape {y.shape} "
            f"with values {np.unique(y)[:5].tolist()}: check the label column of the manifest"
        )
    return y.astype(np.int64)


def _validation_mask(
    ids: np.ndarray, y: np.ndarray, cfg: ClsTrainConfig, val_mask: np.ndarray | None
) -> np.ndarray:
    if val_mask is None:
        return patient_split(ids, val_fraction=cfg.val_fraction, seed=cfg.seed, labels=y)
    return check_val_mask(val_mask, ids)


def _check_val_classes(y_val: np.ndarray, stage: str | None,
                       class_names: list[str] | None) -> bool:
    """Name a one-class validation split before training (True when it is one): its AUC is
    undefined (NaN), so a collapse can't be judged on it; training still runs, stopping early on
    the validation loss, because tiny samples (a 17-image TB sample in 3 folds) cannot avoid it.
    An empty validation split is refused."""
    present = np.unique(y_val)
    if present.size >= 2:
        return False
    where, fix = ((f"cls.{stage}", f"cls.{stage}.val_fraction") if stage
                  else ("train-cls", "--val-fraction"))
    if present.size == 0:
        raise CxrbsError(f"validation split of {where} is empty: raise {fix} or check the labels")
    k = int(present[0])
    names = class_names or list(DEFAULT_CLASS_NAMES)
    label = f"{k} ({names[k]})" if 0 <= k < len(names) else str(k)
    log.warning(
        "validation split of %s has only class %s (%d images): its AUC is undefined and no "
        "collapse is judged; early stopping uses the validation loss (raise %s or check the "
        "labels for a two-class validation split)", where, label, y_val.size, fix)
    return True


def _build_model(
    name: str,
    kwargs: dict[str, Any],
    cfg: ClsTrainConfig,
    init_checkpoint: Path | None,
    torchvision_weights: Path | None,
) -> tuple[nn.Module, str, dict[str, Any]]:
    """Model, its ``init`` tag and details; the checkpoint wins over ImageNet weights."""
    if model_kind(name) != "cls":
        raise CxrbsError(
            f"model {name!r} is a bone-suppression model, not a classifier: use one of "
            f"{', '.join(list_models('cls'))}"
        )
    if int(kwargs.get("num_classes", 2)) != 2:
        raise CxrbsError(
            f"cls.model_kwargs.num_classes must be 2 (normal/abnormal), got {kwargs['num_classes']}"
        )
    model = create_model(name, seed=cfg.seed, **kwargs)
    if init_checkpoint is not None:
        path = Path(init_checkpoint)
        ckpt = read_checkpoint(path, expect="cls")
        if ckpt["model_name"] != name or _plain(ckpt["model_kwargs"]) != _plain(kwargs):
            raise CxrbsError(
                f"{path} holds a {ckpt['model_name']!r} {ckpt['model_kwargs']} classifier but this "
                f"stage trains {name!r} {kwargs}: keep cls.model and cls.model_kwargs the same "
                "for pre-training and fine-tuning"
            )
        return load_checkpoint(path, "cls")[0].train(), f"checkpoint:{path}", {}
    if torchvision_weights is not None:
        path = Path(torchvision_weights)
        info = load_torchvision_weights(model, path)
        if info["missing"]:
            log.warning("%s: %d features.* tensors of %s were not in the file and stay random",
                        path, len(info["missing"]), name)
        detail = {"file": str(path), "loaded": info["loaded"], "missing": len(info["missing"])}
        return model, f"imagenet:{path.name}", detail
    log.warning("no ImageNet weights given: training from random initialisation")
    return model, "random", {}


def _class_weights(y_train: np.ndarray, balanced: bool) -> Tensor:
    counts = np.bincount(y_train, minlength=2)
    if (counts == 0).any():
        raise CxrbsError(
            f"the training split has no images of class {int(np.argmin(counts))}: "
            "add data of both classes or change the split seed"
        )
    w = y_train.size / (2.0 * counts) if balanced else np.ones(2)
    return torch.as_tensor(w, dtype=torch.float32)


def _make_optimizer(model: nn.Module, cfg: ClsTrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,  # torch refuses Nesterov without momentum
        weight_decay=cfg.weight_decay,
    )


def imagenet_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``imagenet_norm: true`` for models that take it: ImageNet weights expect
    inputs normalised with ImageNet's mean/std, and the kwarg makes every later rebuild of the
    model (fine-tuning, prediction) normalise alike."""
    from cxrbs.models import registry

    entry = registry._REGISTRY.get(name)
    if entry is None:
        return kwargs
    params = inspect.signature(entry.constructor).parameters
    return {**kwargs, "imagenet_norm": True} if "imagenet_norm" in params else kwargs
