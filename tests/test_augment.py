"""augment: same geometry for both images of a pair, deterministic, no leakage into validation."""

from __future__ import annotations

import numpy as np
import pytest

from cxrbs.bs.augment import AugmentConfig, augment_pairs
from cxrbs.core.errors import CxrbsError

GEOMETRY_ONLY = AugmentConfig(filter_prob=0.0)


def _smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random images in [0.05, 0.95] with structure the transforms visibly move."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        a, b, c = rng.uniform(1, 4, 3)
        img = 0.5 + 0.45 * np.sin(a * 3 * x + b * 2 * y) * np.cos(c * 2 * y - x)
        imgs.append(img)
    return np.asarray(imgs, dtype=np.float32)


def _pairs(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    src = _smooth_images(n, size, seed)
    tgt = np.clip(src - 0.1 * _smooth_images(n, size, seed + 1), 0, 1)
    return np.stack([src, tgt], axis=1).astype(np.float32)


def test_shapes_range_originals_first_and_origin() -> None:
    pairs = _pairs(4)
    out, origin = augment_pairs(pairs, 11, seed=0)
    assert out.shape == (11, 2, 32, 32) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[:4], pairs)
    np.testing.assert_array_equal(origin[:4], np.arange(4))
    assert origin.shape == (11,) and origin.min() >= 0 and origin.max() < 4
    # augmentations are spread over the pairs: 7 extra over 4 pairs -> 1 or 2 each
    assert sorted(np.bincount(origin[4:], minlength=4).tolist()) == [1, 2, 2, 2]
    # augmented samples differ from their origin yet stay close to it
    for i in range(4, 11):
        diff = np.abs(out[i] - pairs[origin[i]]).mean()
        assert 1e-4 < diff < 0.4


def test_deterministic_for_a_seed() -> None:
    pairs = _pairs(3)
    a, oa = augment_pairs(pairs, 9, seed=5)
    b, ob = augment_pairs(pairs, 9, seed=5)
    c, _ = augment_pairs(pairs, 9, seed=6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(a[3:], c[3:])


@pytest.mark.parametrize("config", [GEOMETRY_ONLY, AugmentConfig(filter_prob=1.0)])
def test_identical_channels_stay_identical(config: AugmentConfig) -> None:
    img = _smooth_images(2)
    pairs = np.stack([img, img], axis=1)
    out, _ = augment_pairs(pairs, 12, seed=1, config=config)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


def test_same_geometry_preserves_a_pixelwise_linear_relation() -> None:
    # the affine resampling is linear in the image, so target = 0.5 * source survives it
    src = _smooth_images(3, seed=4)
    pairs = np.stack([src, 0.5 * src], axis=1).astype(np.float32)
    out, _ = augment_pairs(pairs, 15, seed=2, config=GEOMETRY_ONLY)
    np.testing.assert_allclose(out[:, 1], 0.5 * out[:, 0], atol=1e-6)
    # a mismatched geometry would break it badly: shift the target one pixel
    assert np.abs(np.roll(out[5, 1], 1, axis=1) - 0.5 * out[5, 0]).max() > 1e-2


def test_filters_keep_the_relation_too() -> None:
    # median/max/min commute with positive scaling, unsharp masking is linear
    src = _smooth_images(2, seed=9) * 0.8
    pairs = np.stack([src, 0.5 * src], axis=1).astype(np.float32)
    for name in ("median", "max", "min", "unsharp"):
        cfg = AugmentConfig(filter_prob=1.0, filters=(name,), unsharp_amount=0.2)
        out, _ = augment_pairs(pairs, 6, seed=3, config=cfg)
        inside = out[:, 0] < 1.0  # away from the clip at 1
        np.testing.assert_allclose(out[:, 1][inside], 0.5 * out[:, 0][inside], atol=1e-5)


def test_pure_flip_and_pure_shift() -> None:
    rng = np.random.default_rng(0)
    pairs = rng.random((2, 2, 16, 16)).astype(np.float32)
    flip_only = AugmentConfig(rotation=0, shift=0, zoom=(1, 1), filter_prob=0)
    out, origin = augment_pairs(pairs, 20, seed=0, config=flip_only)
    flipped = 0
    for i in range(2, 20):
        ref = pairs[origin[i]]
        if np.allclose(out[i], ref[..., ::-1], atol=1e-6):
            flipped += 1
        else:
            np.testing.assert_allclose(out[i], ref, atol=1e-6)
    assert 3 <= flipped <= 15
    # shifts of at most 2 px move a single bright dot by at most 2 px
    dot = np.zeros((1, 2, 21, 21), np.float32)
    dot[0, :, 10, 10] = 1.0
    shift_only = AugmentConfig(rotation=0, shift=2, zoom=(1, 1), hflip=False, filter_prob=0)
    out, _ = augment_pairs(dot, 10, seed=1, config=shift_only)
    for img in out[1:, 0]:
        r, c = np.unravel_index(np.argmax(img), img.shape)
        assert abs(r - 10) <= 2 and abs(c - 10) <= 2
        np.testing.assert_allclose(img.sum(), 1.0, atol=1e-5)  # bilinear keeps the mass


def test_preallocated_output_and_errors(tmp_path) -> None:
    pairs = _pairs(2)
    mm = np.lib.format.open_memmap(tmp_path / "aug.npy", mode="w+", dtype=np.float32,
                                   shape=(5, 2, 32, 32))
    res, _ = augment_pairs(pairs, 5, seed=0, out=mm)
    assert res is mm
    ref, _ = augment_pairs(pairs, 5, seed=0)
    np.testing.assert_array_equal(np.asarray(mm), ref)
    with pytest.raises(CxrbsError, match="n_out"):
        augment_pairs(pairs, 1, seed=0)
    with pytest.raises(CxrbsError, match=r"\(N, 2, H, W\)"):
        augment_pairs(pairs[:, 0], 5, seed=0)
    with pytest.raises(CxrbsError, match="need float"):
        augment_pairs(pairs, 5, seed=0, out=np.empty((4, 2, 32, 32), np.float32))
    with pytest.raises(CxrbsError, match="unknown"):
        AugmentConfig(filters=("blur",))


def test_prepare_pairs_augments_only_training_patients(tmp_path) -> None:
    """The workflow's path splits by patient first, then augments the training side only."""
    import pandas as pd

    from cxrbs.bs.pairs import prepare_pairs
    from cxrbs.data.io import write_png
    from cxrbs.data.manifests import build_manifest
    from cxrbs.data.stacks import build_stack

    pairs = _pairs(10, size=32, seed=2)
    for i, pair in enumerate(pairs):
        write_png(tmp_path / "set" / "source" / f"c{i}.png", pair[0])
        write_png(tmp_path / "set" / "target" / f"c{i}.png", pair[1])
    manifest = build_manifest(tmp_path / "set", "paired")
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    build_stack(manifest, tmp_path / "images.npy", size=32, progress=False)
    out = tmp_path / "out"
    counts = prepare_pairs([tmp_path / "manifest.csv"], [tmp_path / "images.npy"],
                           train_out=out / "train.npy", val_out=out / "val.npy",
                           split_out=out / "split.csv", val_fraction=0.2, n_pairs=50, seed=13,
                           progress=False)
    split = pd.read_csv(out / "split.csv", dtype={"patient_id": str})
    train, val = split[split["split"] == "train"], split[split["split"] == "val"]
    assert counts["val"] == len(val) > 0 and counts["train"] == 50
    assert not set(train["patient_id"]) & set(val["patient_id"])
    assert (val["n_augmented"] == 0).all() and train["n_augmented"].sum() == 50
    train_arr, val_arr = np.load(out / "train.npy"), np.load(out / "val.npy")
    assert train_arr.shape == (50, 2, 32, 32) and len(val_arr) == len(val)
    # no validation image, nor anything close to it, appears among the training samples
    for v in val_arr:
        assert np.abs(train_arr - v).reshape(50, -1).mean(axis=1).min() > 1e-3
