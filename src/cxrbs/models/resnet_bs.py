"""ResNet-BS: the study's EDSR-style network (the best of its four bone-suppression models)."""

from __future__ import annotations

from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import BoneSuppressionModel, conv_same
from cxrbs.models.registry import register


class ResBlock(nn.Module):
    """conv-ReLU-conv, scaled, added to the input; no batch norm, no ReLU after the add (EDSR)."""

    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = conv_same(width, width, 3)
        self.relu = nn.ReLU()
        self.conv2 = conv_same(width, width, 3)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.conv2(self.relu(self.conv1(x)))


@register("resnet_bs")
class EDSRBS(BoneSuppressionModel):
    """Head conv, ``n_blocks`` residual blocks, conv + global skip from the head, 1-filter output.

    The output is linear in direct mode (the study's); defaults give its 1,219,841 parameters.
    """

    def __init__(
        self,
        *,
        width: int = 64,
        n_blocks: int = 16,
        res_scale: float = 0.1,
        output: str = "direct",
    ) -> None:
        super().__init__(output=output)
        width, n_blocks = int(width), int(n_blocks)
        if width < 1 or n_blocks < 0:
            raise CxrbsError(
                f"resnet_bs: width must be >= 1 and n_blocks >= 0, got {width}, {n_blocks}"
            )
        self.head = conv_same(1, width, 3)
        self.blocks = nn.Sequential(*(ResBlock(width, float(res_scale)) for _ in range(n_blocks)))
        self.body_out = conv_same(width, width, 3)
        self.out_conv = conv_same(width, 1, 3)
        self._init_weights()

    def _trunk(self, x: Tensor) -> Tensor:
        h = self.head(x)
        return h + self.body_out(self.blocks(h))

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        return y
