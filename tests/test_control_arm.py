"""The control (sham) arm: the image's own bone-suppression change, low-pass kept and high-pass
phase-randomised: same energy and scales, bones left in place (issue 22)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbs.bs.control import phase_randomise, sham_control, split_change
from cxrbs.bs.suppress import restretch
from cxrbs.core.errors import CxrbsError

S = 128


def _ribbed(n: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Originals with a rib pattern (bands ~20 px apart), and suppressed = originals - ribs + a
    broad shading change; returns (original, suppressed, ribs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S] / S
    ribs = np.stack([0.06 * (np.sin(2 * np.pi * (yy * 6.4 + 0.3 * xx) + rng.uniform(0, 6)) > 0.4)
                     for _ in range(n)])
    base = 0.45 + 0.1 * np.sin(3 * xx)[None] + rng.normal(0, 0.005, (n, S, S))
    shading = 0.03 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1)[None]
    original = base + ribs
    return original, original - ribs + shading, ribs


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_sham_change_keeps_energy_and_low_band_but_not_the_bones() -> None:
    original, suppressed, ribs = _ribbed(n=8)
    control = sham_control(original, suppressed, seed=1, low_pct=None)
    change, sham = suppressed - original, control - original
    low, _ = split_change(change)
    cosines, kept = [], []
    for i in range(len(original)):
        # same amount of change as the image's own suppression (no clipping here)
        assert np.linalg.norm(sham[i]) == pytest.approx(np.linalg.norm(change[i]), rel=1e-3)
        # the broad part is the image's own (never another patient's or fold's)
        assert _cos(split_change(sham[i:i + 1])[0][0], low[i]) > 0.9
        # the bone-scale part no longer lines up with this image's ribs
        cosines.append(_cos(split_change(sham[i:i + 1])[1][0], split_change(-ribs[i:i + 1])[1][0]))
        assert _cos(change[i], -ribs[i]) > 0.8
        # bone energy: projection on the rib pattern, relative to the original's
        r = (ribs[i] - ribs[i].mean()).ravel()
        ref = (original[i] - original[i].mean()).ravel() @ r
        kept.append(((control[i] - control[i].mean()).ravel() @ r) / ref)
        assert ((suppressed[i] - suppressed[i].mean()).ravel() @ r) / ref < 0.1  # removed
    assert abs(np.mean(cosines)) < 0.2 and min(kept) > 0.7 and 0.8 < np.mean(kept) < 1.3
    np.testing.assert_array_equal(control, sham_control(original, suppressed, seed=1,
                                                        low_pct=None))
    assert not np.array_equal(control, sham_control(original, suppressed, seed=2, low_pct=None))


def test_phase_randomise_keeps_amplitudes_and_norm() -> None:
    rng = np.random.default_rng(4)
    field = rng.normal(size=(2, 32, 32))
    out = phase_randomise(field, np.random.default_rng(0))
    for f, o in zip(field, out, strict=True):
        assert np.linalg.norm(o - o.mean()) == pytest.approx(np.linalg.norm(f - f.mean()))
        assert o.mean() == pytest.approx(f.mean())
        amp_f, amp_o = np.abs(np.fft.rfft2(f)), np.abs(np.fft.rfft2(o))
        assert np.corrcoef(amp_f.ravel(), amp_o.ravel())[0, 1] > 0.9
        assert abs(_cos(f, o)) < 0.2
    with pytest.raises(CxrbsError, match="equal"):
        sham_control(field, field[:1], seed=0)


def test_restretch_matches_the_originals_percentile_stretch() -> None:
    rng = np.random.default_rng(2)
    images = rng.uniform(0.3, 0.6, (3, 32, 32)).astype(np.float32)
    out = restretch(images, 1.0, 99.0)
    for img, src in zip(out, images, strict=True):
        lo, hi = np.percentile(src, [1, 99])
        np.testing.assert_allclose(img, np.clip((src - lo) / (hi - lo), 0, 1), atol=1e-6)
        assert img.min() == 0.0 and img.max() == 1.0
    np.testing.assert_array_equal(restretch(images, None, 99.0), images)
