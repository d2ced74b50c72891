"""Model registry: importing this package registers every model family.

``create_model("resnet_bs")`` for bone suppression, ``create_model("vgg16")`` for classification;
``list_models("bs")`` / ``list_models("cls")`` name what exists.
"""

from __future__ import annotations

from cxrbs.models import (  # noqa: F401
    autoencoder, convnet, edsr, residual_learning, resnet, small_cnn, unet, vgg,
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
