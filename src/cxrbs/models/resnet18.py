"""ResNet-18 with torchvision's parameter names: the from-scratch classifier of the no-weights
configs (issue 14).

Why a ResNet: at 128² it costs fewer multiply-adds than ``small_cnn`` (the stride-2 stem and
max-pool shrink the image before the wide layers), and residual blocks with batch norm train
reliably from random weights, where VGG-16 stalls (README, "Classifier without ImageNet
weights"). The layout (``conv1``, ``bn1``, ``layer1``…``layer4`` of ``BasicBlock``s with
``downsample.0/1``, ``fc``) is torchvision's ``resnet18`` so its state dicts map key for key; the
head is this package's GAP → dropout → ``fc`` so relevance maps work as for the other classifiers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError
from cxrbs.models.base import ClassifierModel, check_widths
from cxrbs.models.registry import register


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut, as torchvision's."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _layer(c_in: int, c_out: int, n_blocks: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(c_in, c_out, stride)]
    blocks += [BasicBlock(c_out, c_out, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


@register("resnet18")
class ResNet18(ClassifierModel):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four stages of ``blocks`` BasicBlocks
    through ``widths`` (stride 2 from the second on), then GAP, dropout, ``fc``.

    ``zero_init_residual`` starts every block as the identity (last BN scale 0), which Goyal et
    al. (2017) found to help training from scratch; torchvision offers it as an option too.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 2,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
        tta_hflip: bool = False,
    ) -> None:
        ws = check_widths("resnet18", widths, length=4)
        try:
            ns = tuple(int(b) for b in blocks)
        except (TypeError, ValueError):
            raise CxrbsError(f"model 'resnet18': blocks must be 4 integers, got {blocks!r}") from None
        if len(ns) != 4 or min(ns) < 1:
            raise CxrbsError(f"model 'resnet18': blocks must be 4 integers >= 1, got {ns}")
        super().__init__(num_features=ws[-1], num_classes=num_classes, dropout=dropout,
                         tta_hflip=tta_hflip)
        self.conv1 = nn.Conv2d(3, ws[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(ws[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(ws[0], ws[0], ns[0], 1)
        self.layer2 = _layer(ws[0], ws[1], ns[1], 2)
        self.layer3 = _layer(ws[1], ws[2], ns[2], 2)
        self.layer4 = _layer(ws[2], ws[3], ns[3], 2)
        self._init_weights()
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _trunk(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
