"""U-Net-BS: a small residual-output U-Net for bone suppression.

Why a U-Net: rib and clavicle shadows are tens of pixels wide at 256 px, far beyond the receptive
field of a shallow full-resolution network (an EDSR of 8 blocks sees ~35 px). Downsampling three or
four times gives a receptive field of well over 100 px at a fraction of the cost, because most
convolutions run on small feature maps; the skip connections keep the fine edges of the bone
layer. With ``output="residual"`` the last conv predicts the bone layer b and the model returns
x - b; that conv is zero-initialised (see ``BoneSuppressionModel._init_weights``), so the untrained
network is exactly the identity, already a strong baseline (~38 dB PSNR on BSE-JSRT).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import BoneSuppressionModel, conv_same
from cxrbs.models.registry import register


class DoubleConv(nn.Module):
    """conv3x3-ReLU-conv3x3-ReLU (no batch norm: batches are small and crops vary in contrast)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = conv_same(c_in, c_out, 3)
        self.conv2 = conv_same(c_out, c_out, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))))


@register("unet_bs")
class UNetBS(BoneSuppressionModel):
    """Encoder of ``levels`` DoubleConv stages (2x2 max-pool between them), mirrored decoder
    (bilinear 2x upsampling, 1x1 conv, concatenation with the skip, DoubleConv), 1-filter 3x3
    output conv.

    Width doubles per level from ``width`` (capped at ``max_width``). Input sides must be
    divisible by 2**(levels-1); other sides are padded by reflection and cropped back.
    """

    def __init__(
        self,
        *,
        width: int = 16,
        levels: int = 4,
        max_width: int = 256,
        output: str = "residual",
    ) -> None:
        super().__init__(output=output)
        width, levels, max_width = int(width), int(levels), int(max_width)
        if width < 1 or levels < 1 or max_width < width:
            raise CxrbsError(
                f"unet_bs: need width >= 1, levels >= 1, max_width >= width; got width={width}, "
                f"levels={levels}, max_width={max_width}"
            )
        self.levels = levels
        widths: Sequence[int] = [min(width * 2**i, max_width) for i in range(levels)]
        self.down = nn.ModuleList()
        c_in = 1
        for w in widths:
            self.down.append(DoubleConv(c_in, w))
            c_in = w
        self.reduce = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(levels - 2, -1, -1):
            self.reduce.append(nn.Conv2d(widths[i + 1], widths[i], 1))
            self.up.append(DoubleConv(2 * widths[i], widths[i]))
        self.out_conv = conv_same(widths[0], 1, 3)
        self._init_weights()

    def _trunk(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        mult = 2 ** (self.levels - 1)
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips: list[Tensor] = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for reduce, block in zip(self.reduce, self.up):
            skip = skips.pop()
            x = reduce(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            x = block(torch.cat([x, skip], dim=1))
        return x[..., :h, :w]

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        return y
