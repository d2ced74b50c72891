"""The control arm: another patient's bone-suppression change at this image's change energy."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbs.bs.control import energy_matched_control, partners
from cxrbs.bs.suppress import restretch
from cxrbs.core.errors import CxrbsError


def test_partners_are_other_patients_and_seeded() -> None:
    patients = np.array(["a", "a", "b", "c", "d", "d", "e"])
    partner = partners(patients, seed=1)
    assert sorted(partner) == list(range(7))  # a permutation: every change used once
    assert not np.any(patients[partner] == patients)
    np.testing.assert_array_equal(partner, partners(patients, seed=1))
    with pytest.raises(CxrbsError, match="2 patients"):
        partners(np.array(["a", "a"]), seed=0)


def test_control_change_has_the_energy_of_the_images_own_change() -> None:
    rng = np.random.default_rng(0)
    original = rng.uniform(0.4, 0.6, (4, 16, 16))  # no clipping at 0 or 1
    change = rng.normal(0, 0.01, (4, 16, 16)) * np.array([1, 2, 3, 4])[:, None, None]
    partner = np.array([1, 2, 3, 0])
    control = energy_matched_control(original, original + change, partner, low_pct=None)
    moved = control - original
    np.testing.assert_allclose(np.linalg.norm(moved.reshape(4, -1), axis=1),
                               np.linalg.norm(change.reshape(4, -1), axis=1), rtol=1e-5)
    np.testing.assert_allclose(moved[0] / np.linalg.norm(moved[0]),
                               change[1] / np.linalg.norm(change[1]), atol=1e-5)


def test_restretch_matches_the_originals_percentile_stretch() -> None:
    rng = np.random.default_rng(2)
    images = rng.uniform(0.3, 0.6, (3, 32, 32)).astype(np.float32)
    out = restretch(images, 1.0, 99.0)
    for img, src in zip(out, images, strict=True):
        lo, hi = np.percentile(src, [1, 99])
        np.testing.assert_allclose(img, np.clip((src - lo) / (hi - lo), 0, 1), atol=1e-6)
        assert img.min() == 0.0 and img.max() == 1.0
    np.testing.assert_array_equal(restretch(images, None, 99.0), images)
