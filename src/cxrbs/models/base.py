"""Base classes shared by the model families: output modes, penalties, input checks, init."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError

OUTPUT_MODES = ("direct", "residual")


def conv_same(
    c_in: int, c_out: int, kernel: int, *, stride: int = 1, dilation: int = 1, bias: bool = True
) -> nn.Conv2d:
    """Zero-padded conv keeping H, W (divided by ``stride``), like Keras padding="same"."""
    return nn.Conv2d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        padding=dilation * (kernel - 1) // 2,
        dilation=dilation,
        bias=bias,
    )


def check_widths(
    model: str, widths: Sequence[int], *, length: int | None = None
) -> tuple[int, ...]:
    """Validate a channel-width list from a config (YAML gives lists, not tuples)."""
    try:
        out = tuple(int(w) for w in widths)
    except (TypeError, ValueError):
        raise CxrbsError(
            f"model {model!r}: widths must be a list of integers, got {widths!r}"
        ) from None
    if length is not None and len(out) != length:
        raise CxrbsError(f"model {model!r}: widths needs {length} entries, got {len(out)}: {out}")
    if not out or min(out) < 1:
        raise CxrbsError(f"model {model!r}: widths must be positive integers, got {out}")
    return out


class BoneSuppressionModel(nn.Module):
    """(N,1,H,W) radiograph in [0,1] -> (N,1,H,W) soft-tissue estimate.

    Subclasses build ``out_conv`` (the last, 1-filter conv) and implement ``_trunk`` (everything
    before it) and ``_direct`` (the study's output transform). ``output="residual"`` instead treats
    ``out_conv``'s result as the bone layer b and returns x - b; its zero-initialised last conv
    makes the untrained model exactly the identity, a safe start since the target is close to x.
    """

    kind = "bs"
    out_conv: nn.Conv2d

    def __init__(self, *, output: str = "direct") -> None:
        super().__init__()
        if output not in OUTPUT_MODES:
            raise CxrbsError(f"output must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
        self.output = output

    def _trunk(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _direct(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise CxrbsError(
                f"{type(self).__name__} takes (N,1,H,W) images in [0,1], got shape {tuple(x.shape)}"
            )
        y = self.out_conv(self._trunk(x))
        return x - y if self.output == "residual" else self._direct(x, y)

    def penalty(self) -> Tensor:
        """Weight regulariser to add to the loss; none by default."""
        p = next(self.parameters())
        return torch.zeros((), dtype=p.dtype, device=p.device)

    def _init_weights(self) -> None:
        """Keras defaults (Glorot-uniform kernels, zero biases), as the study's models had."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.output == "residual":
            nn.init.zeros_(self.out_conv.weight)
            if self.out_conv.bias is not None:
                nn.init.zeros_(self.out_conv.bias)


def relu_conv_stack(
    widths: Sequence[int], *, kernel: int = 3, dilated: int | None = None
) -> nn.Sequential:
    """Plain conv-ReLU chain from 1 channel through ``widths``; conv ``dilated`` gets dilation 2."""
    layers: list[nn.Module] = []
    c_in = 1
    for i, w in enumerate(widths):
        layers += [conv_same(c_in, w, kernel, dilation=2 if i == dilated else 1), nn.ReLU()]
        c_in = w
    return nn.Sequential(*layers)


#: torchvision's ImageNet normalisation (RGB order), used with ImageNet weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassifierModel(nn.Module):
    """Conv feature extractor -> global average pool -> dropout -> ``fc``.

    ``forward_features`` (last conv maps, after ReLU) and ``fc`` are public because the
    class-selective relevance maps are computed from exactly those two.
    """

    kind = "cls"
    features: nn.Sequential
    _mean: Tensor  # buffers of use_imagenet_norm
    _std: Tensor

    def __init__(self, *, num_features: int, num_classes: int, dropout: float,
                 tta_hflip: bool = False) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise CxrbsError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise CxrbsError(f"dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(num_features, int(num_classes))
        self.imagenet_norm = False
        #: Horizontal-flip test-time augmentation: in eval mode the logits are averaged over the
        #: image and its mirror image. A model kwarg, so checkpoints, fine-tuning and ``predict``
        #: all score alike; the relevance maps still come from the unflipped image.
        self.tta_hflip = bool(tta_hflip)

    def use_imagenet_norm(self) -> None:
        """Normalise inputs with ImageNet's mean/std, as the ImageNet weights were trained.

        Buffers are not persistent: the state dict (and every checkpoint) stays as it was; the
        switch travels as the model kwarg ``imagenet_norm``.
        """
        self.imagenet_norm = True
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N,3,H,W) or grayscale (N,1,H,W) -> last conv maps (N,C,h,w)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise CxrbsError(
                f"{type(self).__name__} takes (N,3,H,W) or (N,1,H,W) images, got {tuple(x.shape)}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.imagenet_norm:  # grey replicated to RGB, then ImageNet's statistics
            x = (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)
        return self._trunk(x)

    def _trunk(self, x: Tensor) -> Tensor:
        """The conv layers; ``features`` unless a model keeps torchvision's own layout."""
        return self.features(x)

    def forward_pooled(self, x: Tensor) -> Tensor:
        """(N,C) pooled features, the embedding shown with t-SNE."""
        return self.forward_features(x).mean(dim=(2, 3))

    def forward_head(self, f: Tensor) -> Tensor:
        return self.fc(self.dropout(f.mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        logits = self.forward_head(self.forward_features(x))
        if self.tta_hflip and not self.training:
            mirrored = self.forward_head(self.forward_features(torch.flip(x, dims=[-1])))
            logits = (logits + mirrored) / 2
        return logits

    def _init_weights(self) -> None:
        """torchvision's VGG init, so training from scratch starts as torchvision's would."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)
