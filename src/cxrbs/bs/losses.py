"""The study's bone-suppression loss, 0.16*MAE + 0.84*(1 - MS-SSIM), usable at any image side.

MS-SSIM downsamples the image once per extra scale and blurs each scale with a Gaussian window, so
the image must satisfy ``side > (win - 1) * 2**(scales - 1)``. The study trained at 256 px with the
standard settings (5 scales, window 11); training on crops (128 px and less) needs smaller settings,
chosen here by one rule shared by the loss and the metric.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _library_ms_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor, nn

from cxrbs.core.errors import CxrbsError

# Wang, Simoncelli & Bovik 2003: relative importance of scales 1 (finest) to 5.
STANDARD_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIGMA = 1.5
# pytorch-msssim 1.0 asserts side > (win - 1) * 16 whatever the number of scales.
_LIBRARY_FACTOR = 2**4


def _fits(side: int, win: int, scales: int) -> bool:
    # The coarsest scale must still be at least one window wide.
    return side > (win - 1) * 2 ** (scales - 1)


def _weights(scales: int) -> list[float]:
    if scales == len(STANDARD_WEIGHTS):
        return list(STANDARD_WEIGHTS)  # as published (they sum to 0.9999), the library's default
    w = STANDARD_WEIGHTS[:scales]
    total = sum(w)
    return [x / total for x in w]


@functools.lru_cache(maxsize=64)
def _settings(side: int, win_size: int, max_scales: int) -> tuple[int, tuple[float, ...]]:
    wins_large = list(range(win_size, min(win_size, 7) - 1, -2))
    # 1. keep all scales and shrink the window down to 7; 2. drop scales at the smallest of those
    # windows; 3. at 2 scales, shrink the window below 7.
    for win in wins_large:
        if _fits(side, win, max_scales):
            return win, tuple(_weights(max_scales))
    win = wins_large[-1]
    for scales in range(max_scales - 1, 1, -1):
        if _fits(side, win, scales):
            return win, tuple(_weights(scales))
    for small in range(win - 2, 2, -2):
        if _fits(side, small, 2):
            return small, tuple(_weights(2))
    raise CxrbsError(
        f"images of side {side} px are too small for MS-SSIM (needs > 4 px for 2 scales with a "
        "3 px window): use larger images or a larger crop_size"
    )


def msssim_settings(side: int, win_size: int = 11, max_scales: int = 5) -> tuple[int, list[float]]:
    """(window, scale weights) for MS-SSIM on images whose smaller side is ``side``.

    Keeps the standard 5 scales / window 11 when they fit (side > 160), otherwise shrinks the
    window to 7 first (finer detail is what bone suppression changes), then drops the coarsest
    scales, then shrinks the window below 7. With fewer scales the standard weights are
    truncated and renormalised to sum to 1, so the loss keeps its [0, 1] range; all 5 scales use
    the published weights unchanged, as the study and pytorch-msssim do.
    """
    side, win_size, max_scales = int(side), int(win_size), int(max_scales)
    if win_size < 3 or win_size % 2 == 0:
        raise CxrbsError(f"MS-SSIM window must be an odd integer >= 3, got {win_size}")
    if not 2 <= max_scales <= len(STANDARD_WEIGHTS):
        raise CxrbsError(f"MS-SSIM scales must be between 2 and 5, got {max_scales}")
    win, weights = _settings(side, win_size, max_scales)
    return win, list(weights)


def msssim(
    x: Tensor, y: Tensor, *, win_size: int, weights: list[float], size_average: bool = True
) -> Tensor:
    """pytorch-msssim's MS-SSIM (data range 1) for (N,1,H,W) tensors, also below its size limit.

    pytorch-msssim 1.0 asserts ``side > (win - 1) * 16`` even with fewer than 5 scales, which
    rejects valid settings such as 3 scales of a 7 px window at 32 px. Where it accepts the
    input it computes the result; elsewhere the same scale loop runs here on its single-scale
    ``_ssim`` (the tests check both paths agree where both apply).
    """
    if min(x.shape[-2:]) > (win_size - 1) * _LIBRARY_FACTOR:
        return _library_ms_ssim(
            x, y, data_range=1.0, size_average=size_average, win_size=win_size, weights=weights
        )
    win = _fspecial_gauss_1d(win_size, WIN_SIGMA).repeat([x.shape[1], 1, 1, 1])
    w = x.new_tensor(weights).view(-1, 1, 1)
    levels: list[Tensor] = []
    for level in range(len(weights)):
        ssim_c, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False)
        if level == len(weights) - 1:
            levels.append(torch.relu(ssim_c))
        else:
            levels.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    per_image = torch.prod(torch.stack(levels) ** w, dim=0).mean(1)
    return per_image.mean() if size_average else per_image


class CombinedLoss(nn.Module):
    """``mae_weight * MAE + msssim_weight * (1 - MS-SSIM)``, the study's loss (max value 1).

    MS-SSIM is computed in float32 outside autocast (its variance terms cancel badly in bf16/fp16)
    and on the prediction clamped to [0, 1]: linear-output models overshoot, and negative
    intensities give NaN in the low-contrast coarse scales. The MAE term sees the raw
    prediction, so overshoot is still penalised.
    """

    def __init__(self, mae_weight: float = 0.16, msssim_weight: float = 0.84,
                 settings_side: int | None = None) -> None:
        super().__init__()
        self.mae_weight = float(mae_weight)
        self.msssim_weight = float(msssim_weight)
        self.settings_side = None if settings_side is None else int(settings_side)

    def settings(self, side: int) -> tuple[int, list[float]]:
        """The (window, weights) used for images of this side (cached by ``msssim_settings``).

        With ``settings_side`` (training on crops) every image side uses the settings of that
        side, so validation on larger centre crops follows the training objective.
        """
        return msssim_settings(self.settings_side if self.settings_side is not None else side)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape or pred.ndim != 4:
            raise CxrbsError(
                f"loss needs prediction and target of equal (N,C,H,W) shape, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        with torch.autocast(device_type=pred.device.type, enabled=False):
            p, t = pred.float(), target.float()
            mae = (p - t).abs().mean()
            win, weights = self.settings(min(p.shape[-2:]))
            sim = msssim(p.clamp(0.0, 1.0), t, win_size=win, weights=weights)
            return self.mae_weight * mae + self.msssim_weight * (1.0 - sim)
