"""CRM fast paths vs the brute-force definition, Grad-CAM vs the CAM identity, overlays, boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cxrbs.explain.crm import (
    class_selective_relevance_map,
    crm_bruteforce,
    crm_raw,
    grad_cam,
    grad_cam_raw,
    mass_inside_boxes,
    overlay,
    read_boxes_csv,
)
from cxrbs.core.errors import CxrbsError


class TinyNet(nn.Module):
    """Two convs, GAP, dropout, fc: the interface of the cxrbs classifiers."""

    def __init__(self, in_ch: int = 3, width: int = 6, n_classes: int = 3, p: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, width, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(p)
        self.fc = nn.Linear(width, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(f.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class MaxHeadNet(TinyNet):
    """Global *max* pooling head: the closed form does not apply, the batched path must."""

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(f.amax(dim=(2, 3))))


class BlockNet(nn.Module):
    """Features are non-zero only where the input is: 4x4 average pooling, positive 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.conv = nn.Conv2d(3, 5, 1, bias=False)
        self.fc = nn.Linear(5, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.rand(5, 3, 1, 1) + 0.1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(self.pool(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean(dim=(2, 3)))


def _model(cls: type[nn.Module] = TinyNet, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls().double()


def _image(seed: int = 1, size: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=gen, dtype=torch.float64)


def _rel_close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-6) -> bool:
    return bool(np.abs(a - b).max() <= rtol * np.abs(b).max())


# --- the key property: fast == brute force ----------------------------------------------------
@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_fast_crm_equals_bruteforce(score: str) -> None:
    model = _model()
    x = _image()
    model.eval()
    reference = crm_bruteforce(model, x, score=score)
    assert reference.shape == (6, 6)
    assert reference.max() > 0 and np.count_nonzero(reference) > 18
    fast = crm_raw(model, x, score)
    assert fast.shape == reference.shape
    assert _rel_close(fast, reference)


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_fast_crm_enforces_eval_mode_and_restores_it(score: str) -> None:
    model = _model()
    x = _image(seed=2)
    # dropout really is active in train mode, so a train-mode CRM would differ
    model.train()
    with torch.no_grad():
        f = model.forward_features(x)
        assert not torch.allclose(model.forward_head(f), model.forward_head(f))
    model.eval()
    reference = crm_bruteforce(model, x, score=score)
    model.train()
    fast = crm_raw(model, x, score)
    assert model.training and model.dropout.training
    assert _rel_close(fast, reference)


def test_mixed_module_modes_are_restored() -> None:
    model = _model()
    model.train()
    model.features.eval()
    crm_raw(model, _image(), "logit")
    assert model.training and model.dropout.training and not model.features.training


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_non_gap_head_falls_back_to_batched_path(score: str) -> None:
    model = _model(MaxHeadNet)
    x = _image(seed=3)
    model.eval()
    reference = crm_bruteforce(model, x, score=score)
    assert _rel_close(crm_raw(model, x, score), reference)
    # and the GAP closed form would have been wrong for this head
    with torch.no_grad():
        f = model.forward_features(x)
        closed = ((torch.einsum("kc,chw->khw", model.fc.weight, f[0]) / 36) ** 2).sum(0)
    assert not _rel_close(closed.numpy(), reference, rtol=1e-2)


def test_closed_form_matches_hand_computation() -> None:
    """Independent of the brute force: sum_k (sum_c w_kc f_c(x,y) / (h*w))**2."""
    model = _model()
    x = _image(seed=4)
    with torch.no_grad():
        f = model.forward_features(x)[0].numpy()  # (C, h, w)
    w = model.fc.weight.detach().numpy()
    c, h, ww = f.shape
    expected = np.zeros((h, ww))
    for i in range(h):
        for j in range(ww):
            expected[i, j] = sum((w[k] @ f[:, i, j] / (h * ww)) ** 2 for k in range(w.shape[0]))
    assert _rel_close(crm_raw(model, x, "logit"), expected)


def test_float32_model_works() -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = _image().float()
    reference = crm_bruteforce(model, x, score="logit")
    assert _rel_close(crm_raw(model, x, "logit"), reference, rtol=1e-3)


# --- normalised map --------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_normalised_map_range_and_shape(score: str) -> None:
    model = _model()
    crm = class_selective_relevance_map(model, _image(size=16), score=score)
    assert crm.shape == (16, 16)
    assert crm.max() == pytest.approx(1.0)
    nonzero = crm[crm > 0]
    assert nonzero.min() >= 0.1 and nonzero.max() <= 1.0
    assert (crm == 0).any()  # thresholding removed something on a random net


def test_threshold_and_out_size() -> None:
    model = _model()
    x = _image(size=16)
    crm = class_selective_relevance_map(model, x, threshold=0.5, out_size=(10, 20))
    assert crm.shape == (10, 20)
    assert set(np.unique(crm[crm < 0.5])) <= {0.0}
    assert crm.max() == pytest.approx(1.0)


def test_single_active_location_gives_peak_there() -> None:
    model = _model(BlockNet)
    x = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    x[:, :, 4:8, 8:12] = 1.0  # feature location (row 1, col 2) of the 4x4 map
    with torch.no_grad():
        f = model.forward_features(x)[0]
    assert torch.count_nonzero(f.abs().sum(0)) == 1
    raw = crm_raw(model, x, "logit")
    assert np.count_nonzero(raw) == 1 and raw[1, 2] > 0
    crm = class_selective_relevance_map(model, x)
    row, col = np.unravel_index(np.argmax(crm), crm.shape)
    assert 4 <= row < 8 and 8 <= col < 12
    assert crm[0:2, :].max() == 0 and crm[:, 0:4].max() == 0 and crm[12:, :].max() == 0


def test_all_zero_features_give_zero_map() -> None:
    model = _model(BlockNet)
    x = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    crm = class_selective_relevance_map(model, x)
    assert crm.shape == (16, 16)
    assert np.all(crm == 0) and np.all(np.isfinite(crm))


def test_bad_score_and_batch_rejected() -> None:
    model = _model()
    with pytest.raises(ValueError, match="score"):
        crm_raw(model, _image(), "probability")
    with pytest.raises(ValueError, match="one image"):
        crm_raw(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), "logit")


# --- Grad-CAM ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0, 2])
def test_grad_cam_equals_cam_for_gap_linear_head(target: int) -> None:
    model = _model()
    x = _image(seed=5)
    with torch.no_grad():
        f = model.forward_features(x)[0].numpy()
    w = model.fc.weight.detach().numpy()[target]
    cam = np.maximum(np.tensordot(w, f, axes=(0, 0)), 0) / (f.shape[1] * f.shape[2])
    model.train()  # Grad-CAM must switch dropout off too
    raw = grad_cam_raw(model, x, target)
    assert model.training
    assert cam.max() > 0
    assert raw.shape == cam.shape
    assert np.allclose(raw, cam, rtol=1e-9, atol=1e-12)


def test_grad_cam_shape_and_range() -> None:
    model = _model()
    x = _image(seed=6, size=14)
    out = grad_cam(model, x, 1)
    assert out.shape == (14, 14)
    assert out.min() >= 0 and out.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="target_class"):
        grad_cam(model, x, 3)


# --- overlay --------------------------------------------------------------------------------------
def test_overlay_shape_range_and_untouched_pixels() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((8, 10))
    heat = np.zeros((8, 10))
    heat[2:5, 3:7] = np.linspace(0.2, 1.0, 12).reshape(3, 4)
    heat[0, 0] = 0.19  # just below the cutoff
    out = overlay(image, heat)
    assert out.shape == (8, 10, 3) and out.dtype == np.float64
    assert out.min() >= 0 and out.max() <= 1
    below = heat < 0.2
    for ch in range(3):
        assert np.array_equal(out[..., ch][below], image[below])
    # hottest pixel: JET at 1.0 is dark red (0.5, 0, 0) blended 0.4 / 0.6 with the gray
    g = image[4, 6]
    assert out[4, 6] == pytest.approx([0.4 * 0.5 + 0.6 * g, 0.6 * g, 0.6 * g], abs=1e-6)


def test_overlay_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        overlay(np.zeros((4, 4)), np.zeros((4, 5)))


# --- boxes ----------------------------------------------------------------------------------------
def test_mass_inside_boxes_three_quarters() -> None:
    heat = np.zeros((10, 10))
    heat[0:2, 0:2] = 1.0  # mass 4, inside box A
    heat[5, 5] = 2.0  # mass 2, inside box B
    heat[9, 9] = 2.0  # mass 2, outside
    boxes = [(0, 0, 3, 3), (4, 4, 2, 2), (1, 1, 1, 1)]  # the last overlaps A: union, not sum
    assert mass_inside_boxes(heat, boxes) == pytest.approx(0.75)
    assert mass_inside_boxes(heat, []) == 0.0
    assert mass_inside_boxes(heat, [(0, 0, 10, 10)]) == pytest.approx(1.0)
    assert mass_inside_boxes(heat, [(-5, -5, 100, 100)]) == pytest.approx(1.0)


def test_mass_inside_boxes_zero_map_is_nan() -> None:
    assert math.isnan(mass_inside_boxes(np.zeros((4, 4)), [(0, 0, 2, 2)]))


def test_read_boxes_csv(tmp_path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("image,x,y,w,h\na.png,1,2,3,4\na.png,5,6,7,8\nb.png,0,0,1.5,2\n")
    boxes = read_boxes_csv(path)
    assert boxes == {
        "a.png": [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)],
        "b.png": [(0.0, 0.0, 1.5, 2.0)],
    }


def test_read_boxes_csv_missing_column(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("image,x,y,width,h\na.png,1,2,3,4\n")
    with pytest.raises(CxrbsError, match=r"bad\.csv.*\bw\b"):
        read_boxes_csv(path)


def test_read_boxes_csv_bad_values_and_missing_file(tmp_path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("image,x,y,w,h\na.png,1,two,3,4\n")
    with pytest.raises(CxrbsError, match=r"nan\.csv line 2"):
        read_boxes_csv(path)
    with pytest.raises(CxrbsError, match="absent.csv"):
        read_boxes_csv(tmp_path / "absent.csv")
