"""The bundled model's training recipe (benchmarks/train_bundled_bs.py) runs, is deterministic and
writes a checkpoint that `cxrbs suppress` loads. Tiny phantoms stand in for BSE-JSRT here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cxrbs.data.phantom_layouts import write_layout
from cxrbs.models.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_bundled_bs",
                                                  ROOT / "benchmarks" / "train_bundled_bs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_layout("pairs", tmp_path_factory.mktemp("pairs"), 10, size=64, seed=3)


def _config(recipe: ModuleType, data: Path, out: Path, **overrides: object) -> object:
    raw = {"seed": 5, "data_dir": str(data), "cache": None, "image_size": 32,
           "split_fractions": [0.6, 0.2, 0.2], "split_csv": str(out / "split.csv"),
           "model_name": "unet_bs", "model_kwargs": {"width": 4, "levels": 2}, "crop": 16,
           "batch_size": 2, "steps": 6, "eval_every": 3, "log_every": 3, "threads": 1,
           "amp": "none", "out_dir": str(out), "log_file": None, **overrides}
    return recipe.Config.from_mapping(raw)


def test_recipe_is_deterministic_and_loadable(pairs_dir: Path, tmp_path: Path) -> None:
    """Same config, same weights; a run ended early (the bundled run hit its wall-clock guard)
    is reproduced exactly by ``stop_at_step``; the checkpoint is in the one cxrbs format."""
    recipe = _recipe()
    first = recipe.train(_config(recipe, pairs_dir, tmp_path / "a", stop_at_step=4))
    second = recipe.train(_config(recipe, pairs_dir, tmp_path / "b", stop_at_step=4))
    assert first["steps"] == second["steps"] == 4 and first["stopped_by_deadline"]
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    model, meta = load_checkpoint(tmp_path / "a" / "bundled_bs_cxrbs.pt", expect="bs")
    assert meta["kind"] == "bs" and meta["input_size"] == 32 and meta["output_mode"] == "residual"
    assert (meta["low_pct"], meta["high_pct"]) == (1.0, 99.0)
    assert (tmp_path / "a" / "split.csv").read_text() == (tmp_path / "b" / "split.csv").read_text()
