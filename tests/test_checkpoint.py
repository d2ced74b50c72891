"""One checkpoint format and loader for both model kinds; classifier prediction has one path.

Errors are one line naming the file; checkpoints of the earlier formats still load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrbs.cli import main as cli_main
from cxrbs.cls.pipeline import finetune_fold  # noqa: F401 - the workflow's module imports cleanly
from cxrbs.cls.predict import fold_images, predict_files, predict_images, preprocessing_of
from cxrbs.core.errors import CxrbsError
from cxrbs.data.io import write_png
from cxrbs.data.stacks import build_stack, load_stack
from cxrbs.models import create_model
from cxrbs.models.checkpoint import header, load_checkpoint, save_checkpoint, sha256_of

BS = ("resnet_bs", {"width": 8, "n_blocks": 1, "output": "residual"})
CLS = ("small_cnn", {"widths": [4, 8, 8, 8]})


def write(tmp_path: Path, kind: str, name: str = "model.pt", **extra) -> tuple[Path, dict]:
    model_name, kwargs = BS if kind == "bs" else CLS
    model = create_model(model_name, seed=3, **kwargs)
    head = header(kind=kind, model_name=model_name, model_kwargs=kwargs, input_size=32, seed=3,
                  versions={"torch": str(torch.__version__)}, low_pct=2.0, high_pct=98.0,
                  output_mode="residual" if kind == "bs" else None,
                  class_names=["normal", "tb"] if kind == "cls" else None)
    path = tmp_path / name
    save_checkpoint(path, {**head, **extra}, model.state_dict())
    return path, model.state_dict()


@pytest.mark.parametrize("kind", ["bs", "cls"])
def test_round_trip_both_kinds(tmp_path: Path, kind: str) -> None:
    path, state = write(tmp_path, kind, best_epoch=4)
    model, meta = load_checkpoint(path, expect=kind, sha256=sha256_of(path))
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)
    assert meta["kind"] == kind and meta["input_size"] == 32 and meta["best_epoch"] == 4
    assert (meta["low_pct"], meta["high_pct"]) == (2.0, 98.0)
    assert meta["format"] == "cxrbs-checkpoint-2" and "model_state" not in meta
    if kind == "bs":
        assert meta["output_mode"] == "residual"
    else:
        assert meta["class_names"] == ["normal", "tb"]


def test_wrong_kind_says_which_command_wrote_it(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "cls")
    with pytest.raises(CxrbsError) as err:
        load_checkpoint(path, expect="bs", purpose="`suppress`")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "classifier checkpoint" in msg
    assert "cxrbs train-cls" in msg and "`suppress` needs a bone-suppression checkpoint" in msg
    bs_path, _ = write(tmp_path, "bs", "bs.pt")
    with pytest.raises(CxrbsError, match=r"bone-suppression checkpoint .*train-bs.*classifier"):
        load_checkpoint(bs_path, expect="cls")


def test_a_picture_instead_of_a_checkpoint_is_named(tmp_path: Path) -> None:
    png = tmp_path / "chest.png"
    write_png(png, np.zeros((8, 8)))
    jpg = tmp_path / "chest.pt"  # a JPEG whatever its name
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpg, format="JPEG")
    dcm = tmp_path / "image.dcm"
    dcm.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    arc = tmp_path / "weights.zip"
    import zipfile

    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("readme.txt", "hello")
    for path, what in ((png, "a PNG image"), (jpg, "a JPEG image"), (dcm, "a DICOM file"),
                       (arc, "a zip archive")):
        with pytest.raises(CxrbsError) as err:
            load_checkpoint(path, expect="bs")
        msg = str(err.value)
        assert msg.startswith(f"{path} is {what}, not a cxrbs checkpoint"), msg
        assert "train-bs / train-cls" in msg and "\n" not in msg and "delete" not in msg


def test_damaged_file_and_checksum_mismatch_are_one_line(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "bs")
    good = sha256_of(path)
    with pytest.raises(CxrbsError) as err:
        load_checkpoint(path, expect="bs", sha256="0" * 64)
    msg = str(err.value)
    assert str(path) in msg and good in msg and "0" * 64 in msg and "\n" not in msg
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CxrbsError) as err:
        load_checkpoint(cut, expect="bs")
    assert str(cut) in str(err.value) and "\n" not in str(err.value)
    assert "delete" not in str(err.value)
    with pytest.raises(CxrbsError, match="missing.pt.*does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoints_of_the_earlier_formats_still_load(tmp_path: Path) -> None:
    model = create_model(BS[0], seed=1, **BS[1])
    old_bs = tmp_path / "old_best.pt"
    torch.save({"format": 1, "model_name": BS[0], "model_kwargs": BS[1], "epoch": 3,
                "data": {"train_shape": [8, 2, 48, 48], "val_shape": [2, 2, 48, 48]},
                "model_state": model.state_dict()}, old_bs)  # fmt: skip
    loaded, meta = load_checkpoint(old_bs, expect="bs")
    assert meta["kind"] == "bs" and meta["input_size"] == 48 and meta["output_mode"] == "residual"
    assert (meta["low_pct"], meta["high_pct"]) == (1.0, 99.0) and meta["epoch"] == 3
    clf = create_model(CLS[0], seed=1, **CLS[1])
    old_cls = tmp_path / "old_model.pt"
    torch.save({"format": "cxrbs-classifier-1", "model_name": CLS[0], "model_kwargs": CLS[1],
                "image_size": 64, "state_dict": clf.state_dict()}, old_cls)  # fmt: skip
    loaded, meta = load_checkpoint(old_cls, expect="cls")
    assert meta["kind"] == "cls" and meta["input_size"] == 64
    assert meta["class_names"] == ["normal", "abnormal"]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in clf.state_dict().items())


def test_cli_predict_equals_the_workflow_path(tmp_path: Path) -> None:
    """The same files through build_stack -> fold images -> model, and through `cxrbs predict`."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
        img = rng.uniform(0, 1, (70 + 3 * i, 64)) ** 2
        img[20:40, 10:30] += 0.5 * (i % 2)
        path = tmp_path / "images" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        write_png(path, np.clip(img, 0, 1), bits=16)
        files.append(path)
    stack_path = build_stack(pd.DataFrame({"image_path": [str(p) for p in files]}),
                             tmp_path / "images.npy", size=48, low_pct=2.0, high_pct=98.0,
                             progress=False)  # fmt: skip
    ckpt, _ = write(tmp_path, "cls", stack_size=48)  # trained at 32 from a 48 px stack
    model, meta = load_checkpoint(ckpt, expect="cls")
    assert preprocessing_of(meta) == {"stack_size": 48, "input_size": 32, "low_pct": 2.0,
                                      "high_pct": 98.0}  # fmt: skip
    workflow = predict_images(model, fold_images(load_stack(stack_path), 32))
    direct = predict_files(model, meta, files, batch_size=2)["probability"].to_numpy()
    out = tmp_path / "pred.csv"
    assert cli_main(["predict", "--model", str(ckpt), "-o", str(out), *map(str, files)]) == 0
    cli = pd.read_csv(out)
    assert cli["image"].tolist() == [str(p) for p in files]
    (column,) = [c for c in cli.columns if c.startswith("p_")]
    np.testing.assert_array_equal(cli[column].to_numpy(), workflow)
    np.testing.assert_array_equal(direct, workflow)
    assert float(np.ptp(workflow)) > 0  # the model does look at the images


def test_suppress_uses_the_checkpoints_input_size_and_percentiles(tmp_path, monkeypatch) -> None:
    import cxrbs.bs.suppress as suppress_mod

    path, _ = write(tmp_path, "bs")
    seen = {}

    def spy(model, image, **kw):
        seen.update(kw)
        return image

    monkeypatch.setattr(suppress_mod, "suppress_image", spy)
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    write_png(src, np.full((40, 40), 0.5))
    suppress_mod.suppress_files([src], tmp_path / "out", path, progress=False)
    assert seen["size"] == 32 and (seen["low_pct"], seen["high_pct"]) == (2.0, 98.0)
