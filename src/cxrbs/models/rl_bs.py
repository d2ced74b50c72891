"""RL-BS: the study's residual-learning stack (eight 3x3 convs, one dilated, output + input)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import BoneSuppressionModel, check_widths, conv_same, relu_conv_stack
from cxrbs.models.registry import register


@register("rl_bs")
class ResidualLearningBS(BoneSuppressionModel):
    """3x3 convs through ``widths`` (last must be 1), conv ``dilated_index`` dilated by 2.

    Direct mode returns x + net(x) as the study did; residual mode returns x - net(x) with the
    last conv zeroed, the same function up to the sign of the last layer but starting at identity.
    ``dilated_index=None`` makes every conv undilated.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (8, 16, 32, 64, 128, 256, 512, 1),
        dilated_index: int | None = 3,
        output: str = "direct",
    ) -> None:
        super().__init__(output=output)
        ws = check_widths("rl_bs", widths)
        if len(ws) < 2 or ws[-1] != 1:
            raise CxrbsError(f"rl_bs: widths must have >= 2 entries ending in 1, got {ws}")
        if dilated_index is not None and not 0 <= int(dilated_index) < len(ws) - 1:
            raise CxrbsError(
                f"rl_bs: dilated_index must be a hidden conv index 0..{len(ws) - 2} or null, "
                f"got {dilated_index}"
            )
        self.body = relu_conv_stack(
            ws[:-1], dilated=None if dilated_index is None else int(dilated_index)
        )
        self.out_conv = conv_same(ws[-2], 1, 3)
        self._init_weights()

    def _trunk(self, x: Tensor) -> Tensor:
        return self.body(x)

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y
