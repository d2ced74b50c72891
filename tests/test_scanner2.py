"""The demo's cross-institution set, "another scanner" (phantom kind ``scanner2``): its targets are
its sources without the bone layer, under scanner 2's documented response, so the identity
baseline has a clear gap there and bone removal is what the set measures (issue 13, item 6)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import yaml

from cxrbs.data.phantom_layouts import write_layout
from cxrbs.data.phantoms import (
    PHANTOM_KINDS,
    SCANNER2_NOISE_GAIN,
    random_phantom,
    scanner2_response,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE, SEED, N = 64, 5, 3


def _read(path: Path) -> np.ndarray:
    return iio.imread(path).astype(np.float64) / 255.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def test_target_is_source_without_the_bone_layer_under_the_scanner_response(tmp_path: Path) -> None:
    out = write_layout("scanner2", tmp_path, N, size=SIZE, seed=SEED)
    names = sorted(p.name for p in (out / "source").glob("*.png"))
    assert names == [f"SCN2_{i:04d}.png" for i in range(1, N + 1)]
    root = np.random.SeedSequence([SEED, PHANTOM_KINDS.index("scanner2")])
    for name, child in zip(names, root.spawn(N), strict=True):
        ph = random_phantom(np.random.default_rng(child), SIZE, None, 0.0)
        raw = ph.soft + ph.bones + ph.noise * np.float32(SCANNER2_NOISE_GAIN)  # scanner 2's input
        source, target = ph.scanner2_pair
        np.testing.assert_array_equal(source, scanner2_response(raw))
        np.testing.assert_allclose(target, scanner2_response(raw - ph.bones), atol=1e-6)
        # the files hold exactly these images, 8-bit as the public sets ship
        for folder, img in (("source", source), ("target", target)):
            stored = iio.imread(out / folder / name)
            np.testing.assert_array_equal(stored, np.round(img * 255).astype(np.uint8))
        # another scanner: noisier and lower contrast than the training pairs
        assert source.std() < ph.radiograph.std()


def test_identity_baseline_has_a_clear_gap_made_of_the_bone_layer(tmp_path: Path) -> None:
    out = write_layout("scanner2", tmp_path, N, size=SIZE, seed=SEED)
    root = np.random.SeedSequence([SEED, PHANTOM_KINDS.index("scanner2")])
    for path, child in zip(sorted((out / "source").glob("*.png")), root.spawn(N), strict=True):
        ph = random_phantom(np.random.default_rng(child), SIZE, None, 0.0)
        assert ph.lungs is not None
        source, target = _read(path), _read(out / "target" / path.name)
        removed = source - target
        lungs, bone = ph.lungs > 0.5, ph.bones > 0.02
        assert _psnr(source, target) < 40.0  # identity is far from perfect ...
        assert removed[lungs & bone].mean() > 0.03  # ... because the bones are still there,
        assert np.abs(removed[ph.bones < 1e-4]).max() <= 1 / 255 + 1e-9  # and nowhere else
        assert np.corrcoef(removed.ravel(), ph.bones.ravel())[0, 1] > 0.9


def test_demo_tests_bone_suppression_on_another_scanner() -> None:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    sets = config["datasets"]
    tests = [s["synthetic"] for s in sets.values() if s["role"] == "bs_test"]
    train = [s["synthetic"] for s in sets.values() if s["role"] == "bs_train"]
    assert [t["kind"] for t in tests] == ["scanner2"]
    assert tests[0]["size"] != train[0]["size"]
