"""`cxrbs suppress` with -o equal to an input folder (issue 15): a second run never reads its own
NAME_bs.png back as an input, and never overwrites an input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrbs.cli import main
from cxrbs.core import atomic
from cxrbs.data.io import write_png
from cxrbs.models import create_model


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(images / f"im{i}.png", rng.uniform(size=(40, 48)).astype(np.float32), bits=8)
    kwargs = {"width": 4, "n_blocks": 1, "output": "residual"}
    model = tmp_path / "bs.pt"
    atomic.save_torch(model, {"model_name": "resnet_bs", "model_kwargs": kwargs,
                              "model_state": create_model("resnet_bs", seed=0,
                                                          **kwargs).state_dict(),
                              "data": {"val_shape": [1, 2, 32, 32]}})
    return images, model


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_folder_given_as_its_own_output_is_refused(setup, capsys) -> None:
    images, model = setup
    before = digest(images)
    assert main(["-q", "suppress", str(images), "-o", str(images), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"-o {images}" in err[0] and "Traceback" not in err[0]
    assert digest(images) == before


def test_files_suppressed_into_their_own_folder_twice(setup, capsys) -> None:
    """`suppress images/*.png -o images`: the first run writes im0_bs.png beside im0.png; the
    second (the same glob now also matches im0_bs.png) is refused before it writes anything."""
    images, model = setup
    first = sorted(str(p) for p in images.glob("*.png"))
    assert main(["-q", "suppress", *first, "-o", str(images), "--model", str(model)]) == 0
    assert sorted(p.name for p in images.iterdir()) == ["im0.png", "im0_bs.png", "im1.png",
                                                       "im1_bs.png"]
    capsys.readouterr()
    before = digest(images)
    second = sorted(str(p) for p in images.glob("*.png"))
    assert main(["-q", "suppress", *second, "-o", str(images), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cxrbs: error: -o {images}: input "), err
    assert "im0_bs.png would be overwritten" in err[0]
    assert digest(images) == before  # no NAME_bs_bs.png, no input replaced


def test_a_users_own_bs_file_is_never_overwritten(setup, capsys) -> None:
    images, model = setup
    own = images / "im0_bs.png"
    write_png(own, np.full((40, 48), 0.25, np.float32))
    before = own.read_bytes()
    inputs = [str(images / "im0.png"), str(own)]
    assert main(["-q", "suppress", *inputs, "-o", str(images), "--model", str(model)]) == 2
    assert own.read_bytes() == before
    assert not (images / "im0_bs_bs.png").exists()
