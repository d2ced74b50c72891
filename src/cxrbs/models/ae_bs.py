"""AE-BS: the study's convolutional autoencoder (5x5 kernels, two stride-2 downsamplings)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import BoneSuppressionModel, check_widths, conv_same
from cxrbs.models.registry import register


@register("ae_bs")
class AutoencoderBS(BoneSuppressionModel):
    """Encoder w0, w1 (stride 2), w2 (stride 2); decoder w1, up x2, w0, up x2; 1-filter output.

    Direct mode ends in a sigmoid (the study's output). H and W must be divisible by 4 so the two
    upsamplings restore the input size.
    """

    def __init__(
        self, *, widths: Sequence[int] = (16, 32, 64), output: str = "direct"
    ) -> None:
        super().__init__(output=output)
        w0, w1, w2 = check_widths("ae_bs", widths, length=3)
        self.encoder = nn.Sequential(
            conv_same(1, w0, 5), nn.ReLU(),
            conv_same(w0, w1, 5, stride=2), nn.ReLU(),
            conv_same(w1, w2, 5, stride=2), nn.ReLU(),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            conv_same(w2, w1, 5), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
            conv_same(w1, w0, 5), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
        )  # fmt: skip
        self.out_conv = conv_same(w0, 1, 5)
        self._init_weights()

    def _trunk(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise CxrbsError(
                f"ae_bs needs image height and width divisible by 4, got {h}x{w}: "
                "resize or pad the images (preprocess size) to a multiple of 4"
            )
        return self.decoder(self.encoder(x))

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(y)
