"""preprocess: one path for every image; shape, range and saturation on odd and real inputs."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cxrbs.core.errors import CxrbsError
from cxrbs.data.preprocess import (
    apply_stretch,
    from_uint16,
    preprocess,
    preprocess_pair,
    stretch_limits,
    to_uint16,
)

DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]


def _finite_elements(dtype: np.dtype) -> st.SearchStrategy | None:
    if np.dtype(dtype).kind == "f":
        return st.floats(allow_nan=False, allow_infinity=False, width=8 * np.dtype(dtype).itemsize)
    return None


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(
        st.one_of(
            st.tuples(st.integers(1, 64), st.integers(1, 64)),
            st.sampled_from([(1, 1), (1, 50), (50, 1), (2, 64)]),
        )
    )
    return draw(arrays(dtype, shape, elements=_finite_elements(dtype)))


@settings(max_examples=150, deadline=None)
@given(img=images(), size=st.sampled_from([8, 16, 33]))
def test_preprocess_any_input_gives_unit_range_float32(img: np.ndarray, size: int) -> None:
    out = preprocess(img, size)
    assert out.shape == (size, size)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_stretch_is_linear_between_percentiles() -> None:
    # a ramp 0..99 on a 10x10 grid: size equal to the input, so resize is the identity
    img = np.arange(100, dtype=np.float64).reshape(10, 10)
    out = preprocess(img, 10, low_pct=10, high_pct=90)
    lo, hi = np.percentile(img, [10, 90])  # 9.9, 89.1
    expected = np.clip((img - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert stretch_limits(img, 10, 90) == pytest.approx((lo, hi))


def test_constant_and_flat_images_become_zeros() -> None:
    assert not preprocess(np.full((20, 30), 7, np.uint8), 16).any()
    # almost constant: p1 == p99 although one pixel differs
    img = np.zeros((40, 40))
    img[0, 0] = 5.0
    assert not preprocess(img, 40).any()
    assert not apply_stretch(np.ones((3, 3)), 2.0, 2.0).any()


def test_rgb_and_rgba_collapse_to_gray() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (24, 24)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((24, 24, 1), 255, np.uint8)], axis=2)
    ref = preprocess(gray, 16)
    np.testing.assert_allclose(preprocess(rgb, 16), ref, atol=1e-5)
    np.testing.assert_allclose(preprocess(rgba, 16), ref, atol=1e-5)


def test_huge_float64_values_do_not_overflow() -> None:
    img = np.array([[-1.7e308, 1.7e308], [0.0, 1e308]])
    out = preprocess(img, 8)
    assert np.isfinite(out).all() and out.max() == 1.0 and out.min() == 0.0


@pytest.mark.parametrize(
    ("bad", "word"), [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")]
)
def test_non_finite_input_raises_naming_the_problem(bad: float, word: str) -> None:
    img = np.ones((16, 16), np.float32)
    img[3, 4] = bad
    with pytest.raises(CxrbsError, match=word):
        preprocess(img, 8)


def test_invalid_size_shape_and_percentiles_raise() -> None:
    img = np.ones((16, 16))
    with pytest.raises(CxrbsError, match="size"):
        preprocess(img, 4)
    with pytest.raises(CxrbsError, match="shape"):
        preprocess(np.ones((2, 16, 16)), 8)
    with pytest.raises(CxrbsError, match="percentiles"):
        preprocess(img, 8, low_pct=50, high_pct=10)
    with pytest.raises(CxrbsError, match="dtype"):
        preprocess(np.ones((8, 8), complex), 8)


def test_real_radiograph_saturates_one_percent_each_end(shared_data: Path) -> None:
    path = sorted((shared_data / "bse-jsrt" / "source").glob("*.png"))[0]
    img = iio.imread(path)
    out = preprocess(img, 256)
    assert out.shape == (256, 256) and out.dtype == np.float32
    at_zero, at_one = np.mean(out == 0.0), np.mean(out >= 1.0)
    assert 0.005 <= at_zero <= 0.03, at_zero
    assert 0.005 <= at_one <= 0.03, at_one
    # the rest keeps its grey levels rather than collapsing onto the ends
    inside = out[(out > 0) & (out < 1)]
    assert inside.size > 0.9 * out.size and np.unique(inside).size > 1000
    bad = img.astype(np.float32)
    bad[100, 100] = np.nan
    with pytest.raises(CxrbsError, match="NaN"):
        preprocess(bad, 256)


def test_pair_with_identical_images_gives_identical_outputs() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 4096, (50, 40)).astype(np.uint16)
    for mode in ("shared", "independent"):
        src, tgt = preprocess_pair(img, img.copy(), 32, mode=mode)
        np.testing.assert_array_equal(src, tgt)
        np.testing.assert_array_equal(src, preprocess(img, 32))


def test_shared_mode_keeps_target_on_source_scale() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0.2, 1.0, (32, 32))
    bone = np.zeros_like(src)
    bone[10:14, :] = 0.15  # a "rib" that the target lacks
    tgt = src - bone
    s_sh, t_sh = preprocess_pair(src, tgt, 32, mode="shared")
    # same limits: where source and target agree the outputs agree, and target <= source
    np.testing.assert_array_equal(s_sh[bone == 0], t_sh[bone == 0])
    assert (t_sh <= s_sh).all()
    lo, hi = stretch_limits(src, 1, 99)
    np.testing.assert_allclose(t_sh, np.clip((tgt - lo) / (hi - lo), 0, 1), atol=1e-6)
    # independent mode re-stretches the target, so the unchanged pixels move
    _, t_ind = preprocess_pair(src, tgt, 32, mode="independent")
    lo_t, hi_t = stretch_limits(tgt, 1, 99)
    np.testing.assert_allclose(t_ind, np.clip((tgt - lo_t) / (hi_t - lo_t), 0, 1), atol=1e-6)
    assert not np.allclose(t_ind[bone == 0], s_sh[bone == 0], atol=1e-3)


def test_mismatched_pair_raises_with_name() -> None:
    with pytest.raises(CxrbsError, match=r"JPCLN042\.png.*mismatched"):
        preprocess_pair(np.ones((20, 20)), np.ones((20, 21)), 16, name="JPCLN042.png")
    with pytest.raises(CxrbsError, match="mode"):
        preprocess_pair(np.ones((20, 20)), np.ones((20, 20)), 16, mode="both")


def test_uint16_round_trip() -> None:
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    packed = to_uint16(img)
    assert packed.dtype == np.uint16 and packed[0, 0] == 0 and packed[-1, -1] == 65535
    back = from_uint16(packed)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, img, atol=0.5 / 65535 + 1e-7)
    assert to_uint16(np.array([-0.5, 2.0])).tolist() == [0, 65535]
    with pytest.raises(CxrbsError, match="uint16"):
        from_uint16(np.zeros(3, np.uint8))
    with pytest.raises(CxrbsError, match="NaN"):
        to_uint16(np.array([np.nan]))
