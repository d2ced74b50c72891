"""Synthetic radiographs: layers add up like a BSE pair, plausible anatomy, real-set layouts."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cxrbs.core.errors import CxrbsError
from cxrbs.data.phantom_layouts import write_layout
from cxrbs.data.phantoms import PHANTOM_KINDS, Phantom, make_phantom

SIZE = 96


def _phantom(seed: int, **kwargs: object) -> Phantom:
    return make_phantom(np.random.default_rng(seed), SIZE, **kwargs)  # type: ignore[arg-type]


def _lung_zones(ph: Phantom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lung mask and its upper third and lower third (by the lungs' own height)."""
    assert ph.lungs is not None
    lung = ph.lungs > 0.5
    rows = np.nonzero(lung.any(axis=1))[0]
    top, bottom = rows.min(), rows.max()
    r = np.arange(lung.shape[0])[:, None]
    upper = lung & (r < top + (bottom - top) / 3)
    lower = lung & (r > bottom - (bottom - top) / 3)
    return lung, upper, lower


def test_same_seed_same_phantom_and_different_seed_differs() -> None:
    a, b, c = _phantom(7), _phantom(7), _phantom(8)
    for name in ("soft", "bones", "noise"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert np.abs(a.radiograph - c.radiograph).mean() > 0.01


def test_one_generator_gives_a_new_patient_each_call() -> None:
    rng = np.random.default_rng(3)
    first, second = make_phantom(rng, SIZE), make_phantom(rng, SIZE)
    assert np.abs(first.radiograph - second.radiograph).mean() > 0.01


@pytest.mark.parametrize("size", [32, 64, 97])
@pytest.mark.parametrize("tb", [False, True])
def test_images_are_finite_float32_in_unit_range(size: int, tb: bool) -> None:
    ph = make_phantom(np.random.default_rng(size), size, tb=tb)
    for img in (ph.radiograph, ph.soft_tissue, ph.dual_energy):
        assert img.shape == (size, size)
        assert img.dtype == np.float32
        assert np.isfinite(img).all()
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert img.std() > 0.1  # an image, not a constant
    assert (ph.bones >= 0).all()


def test_pair_differs_by_exactly_the_bone_layer_where_not_clipped() -> None:
    ph = _phantom(11)
    with_bones = ph.soft + ph.bones + ph.noise
    without = ph.soft + ph.noise
    free = (with_bones > 0) & (with_bones < 1) & (without > 0) & (without < 1)
    assert free.mean() > 0.95  # the check below must cover nearly the whole image
    np.testing.assert_allclose(
        (ph.radiograph - ph.soft_tissue)[free], ph.bones[free], atol=1e-6
    )
    # the noise is shared: the pair's difference has no noise in it
    assert np.abs(ph.radiograph - ph.soft_tissue)[ph.bones == 0].max() == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bones_cover_a_plausible_part_of_the_lungs_and_little_else(seed: int) -> None:
    ph = _phantom(seed)
    lung, _, _ = _lung_zones(ph)
    covered = (ph.bones[lung] > 0.02).mean()
    assert 0.25 < covered < 0.8, covered  # ribs and gaps, not a solid plate or nothing
    assert ph.bones.max() < 0.3  # bone shadows are a modulation, like BSE-JSRT differences
    outside = ph.lungs < 0.02  # BSE-style targets keep bone shadows outside the lung fields
    assert ph.bones[outside].max() < 0.01


def test_lungs_are_darker_than_the_mediastinum() -> None:
    for seed in range(3):
        ph = _phantom(seed)
        lung, _, _ = _lung_zones(ph)
        s = SIZE
        spine_band = ph.radiograph[int(0.3 * s) : int(0.6 * s), s // 2 - 3 : s // 2 + 3]
        assert spine_band.mean() - ph.radiograph[lung].mean() > 0.25
        assert lung.mean() > 0.15  # two lungs of adult size, not a sliver


def test_tb_brightens_the_upper_lung_zones_of_the_same_patient() -> None:
    for seed in range(3):
        normal, tb = _phantom(seed), _phantom(seed, tb=True, tb_severity=1.0)
        np.testing.assert_array_equal(normal.bones, tb.bones)  # same patient, same noise
        np.testing.assert_array_equal(normal.noise, tb.noise)
        _, upper, lower = _lung_zones(normal)
        diff = tb.soft_tissue - normal.soft_tissue  # opacities survive bone suppression
        assert diff[upper].mean() > 0.005
        assert diff[upper].mean() > 5 * abs(diff[lower].mean())


def test_tb_severity_scales_the_opacities() -> None:
    normal = _phantom(4)
    _, upper, _ = _lung_zones(normal)
    gain = [
        (_phantom(4, tb=True, tb_severity=s).radiograph - normal.radiograph)[upper].mean()
        for s in (0.0, 0.5, 2.0)
    ]
    assert gain[0] == 0.0
    assert gain[1] > 0.0
    assert gain[2] > 4 * gain[1]  # 4x the severity: stronger and more numerous opacities


@pytest.mark.parametrize("bad", [{"tb_severity": -1.0}, {"tb_severity": float("nan")}])
def test_bad_severity_is_a_user_error(bad: dict[str, float]) -> None:
    with pytest.raises(CxrbsError, match="tb_severity"):
        make_phantom(np.random.default_rng(0), SIZE, tb=True, **bad)


def test_tiny_size_is_a_user_error() -> None:
    with pytest.raises(CxrbsError, match="size"):
        make_phantom(np.random.default_rng(0), 8)


# ----------------------------------------------------------------------------- layouts


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _read(path: Path) -> np.ndarray:
    img = iio.imread(path)
    assert img.dtype == np.uint8 and img.ndim == 2, (path, img.dtype, img.shape)
    return img


def _no_leftovers(root: Path) -> None:
    hidden = [p for p in root.rglob("*") if p.name.startswith(".")]
    assert not hidden, f"temporary files left behind: {hidden}"


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [("pairs", r"JPCNN\d{3}\.png"), ("des", r"SZCH_\d{4}\.png")],
)
def test_paired_layouts(tmp_path: Path, kind: str, pattern: str) -> None:
    out = write_layout(kind, tmp_path / kind, 5, size=64, seed=2)
    assert out == tmp_path / kind
    src, tgt = _pngs(out / "source"), _pngs(out / "target")
    assert len(src) == 5
    assert [p.name for p in src] == [p.name for p in tgt]
    assert all(re.fullmatch(pattern, p.name) for p in src)
    sources = [_read(p).astype(float) for p in src]
    targets = [_read(p).astype(float) for p in tgt]
    assert all(s.shape == (64, 64) for s in sources + targets)
    # each pair is a different patient
    assert min(np.abs(a - b).mean() for a, b in zip(sources, sources[1:])) > 2.0
    for s, t in zip(sources, targets, strict=True):
        assert np.abs(s - t).mean() > 0.5  # the bone layer is gone from the target
    _no_leftovers(out)


def test_des_targets_look_like_another_institution(tmp_path: Path) -> None:
    """DES soft-tissue images have flatter contrast than their sources; BSE targets do not."""
    des = write_layout("des", tmp_path / "des", 3, size=64, seed=0)
    bse = write_layout("pairs", tmp_path / "bse", 3, size=64, seed=0)

    def contrast_ratio(root: Path) -> float:
        pairs = zip(_pngs(root / "source"), _pngs(root / "target"), strict=True)
        return float(np.mean([_read(t).std() / _read(s).std() for s, t in pairs]))

    assert contrast_ratio(des) < 0.9
    assert contrast_ratio(bse) > 0.9
    dark = [np.percentile(_read(p), 1) for p in _pngs(des / "target")]
    assert min(dark) > 20  # lifted black level: air is no longer black


@pytest.mark.parametrize(
    ("kind", "prefix", "n", "n_tb"),
    [("shenzhen", "CHNCXR", 10, 5), ("montgomery", "MCUCXR", 10, 4)],
)
def test_tb_layouts(tmp_path: Path, kind: str, prefix: str, n: int, n_tb: int) -> None:
    out = write_layout(kind, tmp_path, n, size=64, seed=5)
    files = _pngs(out)
    assert len(files) == n
    labels = []
    for p in files:
        m = re.fullmatch(rf"{prefix}_(\d{{4}})_([01])\.png", p.name)
        assert m, p.name
        labels.append(int(m.group(2)))
    assert sum(labels) == n_tb
    assert len({p.name[:11] for p in files}) == n  # case numbers are unique
    _no_leftovers(out)


def test_cxr8_layout(tmp_path: Path) -> None:
    out = write_layout("cxr8", tmp_path, 20, size=64, seed=3)
    names = {"normal": _pngs(out / "normal"), "abnormal": _pngs(out / "abnormal")}
    assert sorted(p.name for p in out.iterdir()) == ["abnormal", "normal"]
    files = names["normal"] + names["abnormal"]
    assert len(files) == 20
    assert names["normal"] and names["abnormal"]
    follow_ups: Counter[str] = Counter()
    for p in files:
        m = re.fullmatch(r"(\d{8})_(\d{3})\.png", p.name)
        assert m, p.name
        follow_ups[m.group(1)] += 1
    assert max(follow_ups.values()) > 1
    assert len({p.name for p in files}) == 20  # one file per (patient, follow-up)
    for pid, count in follow_ups.items():  # follow-ups numbered 000, 001, ... per patient
        got = sorted(p.stem[9:] for p in files if p.stem.startswith(pid))
        assert got == [f"{i:03d}" for i in range(count)]
    _no_leftovers(out)


def test_cxr8_follow_ups_are_the_same_patient(tmp_path: Path) -> None:
    """Follow-ups share anatomy, so a patient-level split matters: they correlate more."""
    out = write_layout("cxr8", tmp_path, 16, size=64, seed=0)
    imgs: dict[str, list[np.ndarray]] = {}
    for p in sorted(out.rglob("*.png")):
        imgs.setdefault(p.stem[:8], []).append(_read(p).astype(float).ravel())
    same = [np.corrcoef(v[0], v[1])[0, 1] for v in imgs.values() if len(v) > 1]
    firsts = [v[0] for v in imgs.values()]
    other = [np.corrcoef(a, b)[0, 1] for a, b in zip(firsts, firsts[1:])]
    assert same and np.mean(same) > np.mean(other) + 0.02


def test_layouts_are_deterministic(tmp_path: Path) -> None:
    a = write_layout("montgomery", tmp_path / "a", 4, size=48, seed=9)
    b = write_layout("montgomery", tmp_path / "b", 4, size=48, seed=9)
    c = write_layout("montgomery", tmp_path / "c", 4, size=48, seed=10)
    assert [p.name for p in _pngs(a)] == [p.name for p in _pngs(b)]
    for pa, pb in zip(_pngs(a), _pngs(b), strict=True):
        np.testing.assert_array_equal(_read(pa), _read(pb))
    assert any(
        not np.array_equal(_read(pa), _read(pc))
        for pa, pc in zip(_pngs(a), _pngs(c), strict=True)
    )


def test_unknown_kind_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(CxrbsError) as err:
        write_layout("jsrt", tmp_path, 3)
    for kind in PHANTOM_KINDS:
        assert kind in str(err.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 2, "seed": -1}, {"n": 2, "size": 8}])
def test_bad_layout_arguments_are_user_errors(tmp_path: Path, bad: dict[str, int]) -> None:
    with pytest.raises(CxrbsError):
        write_layout("pairs", tmp_path / "x", **bad)  # type: ignore[arg-type]
