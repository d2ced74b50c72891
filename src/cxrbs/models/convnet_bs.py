"""ConvNet-BS: the study's plain stack of seven 3x3 convs with an L1 kernel penalty."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import BoneSuppressionModel, check_widths, conv_same, relu_conv_stack
from cxrbs.models.registry import register


@register("convnet_bs")
class ConvNetBS(BoneSuppressionModel):
    """3x3 same convs through ``widths`` (last must be 1), ReLU between, sigmoid in direct mode.

    The study's notebook used 126 instead of 128 for the 4th layer: pass
    ``widths=(16, 32, 64, 126, 256, 512, 1)`` to match it exactly.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64, 128, 256, 512, 1),
        l1: float = 1e-9,
        output: str = "direct",
    ) -> None:
        super().__init__(output=output)
        ws = check_widths("convnet_bs", widths)
        if len(ws) < 2 or ws[-1] != 1:
            raise CxrbsError(f"convnet_bs: widths must have >= 2 entries ending in 1, got {ws}")
        if float(l1) < 0:
            raise CxrbsError(f"convnet_bs: l1 must be >= 0, got {l1}")
        self.l1 = float(l1)
        self.body = relu_conv_stack(ws[:-1])
        self.out_conv = conv_same(ws[-2], 1, 3)
        self._init_weights()

    def _trunk(self, x: Tensor) -> Tensor:
        return self.body(x)

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(y)

    def penalty(self) -> Tensor:
        """l1 * sum |kernel| over every conv (Keras kernel_regularizer=l1: biases excluded)."""
        kernels = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        return self.l1 * torch.stack([k.abs().sum() for k in kernels]).sum()
