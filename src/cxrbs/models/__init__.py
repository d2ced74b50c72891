"""Model registry: importing this package registers every model family.

``create_model("resnet_bs")`` for bone suppression, ``create_model("vgg16")`` for classification;
``list_models("bs")`` / ``list_models("cls")`` name what exists.
"""

from __future__ import annotations

from cxrbs.models import (  # noqa: F401
    ae_bs, convnet_bs, resnet18, resnet_bs, rl_bs, small_cnn, unet_bs, vgg,
)
from cxrbs.models.base import BoneSuppressionModel, ClassifierModel
from cxrbs.models.registry import create_model, list_models, model_kind, register
from cxrbs.models.vgg import load_torchvision_weights

__all__ = [
    "BoneSuppressionModel",
    "ClassifierModel",
    "create_model",
    "list_models",
    "load_torchvision_weights",
    "model_kind",
    "register",
]
