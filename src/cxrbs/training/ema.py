"""One exponential moving average (EMA) of model weights, shared by both trainers.

Averaging the weights of the last few hundred steps gives a smoother model than the last step's
weights at no training cost; both the classifier and bone-suppression recipes use it, so there is
one implementation (torch's :class:`~torch.optim.swa_utils.AveragedModel`) and one decay rule.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["ema_of", "ramped_decay"]


def ramped_decay(decay: float, updates: int) -> float:
    """``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, as timm's and TensorFlow's EMA do:
    with a few hundred steps per run, a fixed 0.999 would still be mostly the initialisation."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


def ema_of(model: nn.Module, decay: float) -> AveragedModel | None:
    """An EMA of ``model``'s weights and buffers (batch-norm statistics), or None for decay <= 0.

    Call ``.update_parameters(model)`` after every optimiser step; ``.module`` is the average.
    """
    if decay <= 0:
        return None

    def blend(avg: Tensor, new: Tensor, n: Tensor | int) -> Tensor:
        return avg + (new - avg) * (1.0 - ramped_decay(decay, int(n)))

    return AveragedModel(model, avg_fn=blend, use_buffers=True)
