"""Bundled bone-suppression models: index, checksum on load, `cxrbs models`, suppress fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrbs.bs import bundled
from cxrbs.bs.suppress import resolve_model
from cxrbs.cli import main
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.data.io import write_png
from cxrbs.models import create_model
from cxrbs.models.checkpoint import header, save_checkpoint, sha256_of


def _tiny_bundle(folder: Path, *, name: str = "tiny-bs") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = create_model("resnet_bs", width=4, n_blocks=1, output="residual", seed=0)
    meta = header(kind="bs", model_name="resnet_bs",
                  model_kwargs={"width": 4, "n_blocks": 1, "output": "residual"},
                  input_size=32, seed=0, versions={}, output_mode="residual")
    weights = folder / f"{name}.pt"
    save_checkpoint(weights, meta, model.state_dict())
    (folder / f"{name}.md").write_text("# card\n", encoding="utf-8")
    index = {name: {"file": weights.name, "sha256": sha256_of(weights), "card": f"{name}.md",
                    "default": True, "description": "a test model",
                    "figures": {"held-out PSNR gain": "+0.0 dB"}}}
    (folder / bundled.INDEX_NAME).write_text(json.dumps(index), encoding="utf-8")
    return weights


@pytest.fixture()
def bundle_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bundled"
    _tiny_bundle(folder)
    monkeypatch.setattr(bundled, "BUNDLED_DIR", folder)
    return folder


def test_index_lists_the_default_first(bundle_dir: Path) -> None:
    models = bundled.list_bundled()
    assert [m.name for m in models] == ["tiny-bs"]
    assert models[0].default and bundled.default_bundled() == models[0]
    assert "held-out PSNR gain: +0.0 dB" in bundled.describe(models[0])
    with pytest.raises(CxrbsError, match="no bundled model named 'nope'"):
        bundled.get_bundled("nope")


def test_tampered_weights_fail_with_file_and_checksums(bundle_dir: Path) -> None:
    model = bundled.get_bundled("tiny-bs")
    assert bundled.verified_weights(model) == model.weights
    data = bytearray(model.weights.read_bytes())
    data[-10] ^= 0xFF
    model.weights.write_bytes(bytes(data))
    with pytest.raises(CxrbsError) as info:
        bundled.verified_weights(model)
    message = str(info.value)
    assert str(model.weights) in message and model.sha256 in message
    assert sha256_of(model.weights) in message and "\n" not in message


def test_suppress_falls_back_to_the_bundled_model(bundle_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no results/bs/best.json here
    assert resolve_model(None, Layout()) == bundle_dir / "tiny-bs.pt"
    assert resolve_model("tiny-bs", Layout()) == bundle_dir / "tiny-bs.pt"
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    rng = np.random.default_rng(0)
    write_png(image, rng.random((40, 36)).astype(np.float32))
    assert main(["suppress", str(image.parent), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a_bs.png").is_file()
    assert "bundled model tiny-bs" in capsys.readouterr().err
    assert main(["models"]) == 0
    assert "tiny-bs  (default)" in capsys.readouterr().out


def test_workflow_choice_wins_over_the_bundled_model(bundle_dir: Path, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "results")
    ckpt = layout.bs_checkpoint("resnet_bs")
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes((bundle_dir / "tiny-bs.pt").read_bytes())
    layout.bs_best.write_text(json.dumps({"checkpoint": layout.relative(ckpt)}), encoding="utf-8")
    assert resolve_model(None, layout) == ckpt


def test_shipped_index_is_consistent() -> None:
    """Whatever ships in the package: each entry's file exists and matches its sha256."""
    for model in bundled.list_bundled(bundled.BUNDLED_DIR):
        assert model.card.is_file(), model.card
        assert bundled.verified_weights(model) == model.weights
        assert model.weights.stat().st_size <= 10 * 1024 * 1024
