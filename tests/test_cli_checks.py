"""Issue 15 on the command line: every option checked before any work, in the CLI's own words.

Each bad option gives exit 2 and one line ``cxrbs: error: FLAG VALUE: fix`` before an image is
read or a folder written; outputs never replace inputs; ``-o`` inside an input folder is not read
back as input; ``suppress``/``predict`` log progress lines when stderr is no terminal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrbs.cli import build_parser, main
from cxrbs.core import atomic
from cxrbs.data.io import write_png
from cxrbs.models import create_model

WORKFLOW_WORDS = ("set it to null", "raise the config key", "in the config", "config key",
                  "source_dir/target_dir")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_checks")
    images = root / "images"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(images / f"im{i}.png", rng.uniform(size=(40, 48)).astype(np.float32), bits=8)
    pairs = root / "pairs"
    for sub in ("source", "target"):
        write_png(pairs / sub / "p1.png", rng.uniform(size=(40, 40)).astype(np.float32), bits=8)
    kwargs = {"width": 4, "n_blocks": 1, "output": "residual"}
    bs = root / "bs.pt"
    atomic.save_torch(bs, {"model_name": "resnet_bs", "model_kwargs": kwargs,
                           "model_state": create_model("resnet_bs", seed=0, **kwargs).state_dict(),
                           "data": {"val_shape": [1, 2, 32, 32]}})
    cls_kwargs = {"widths": [4, 8, 8, 8]}
    cls = root / "cls.pt"
    atomic.save_torch(cls, {"model_name": "small_cnn", "model_kwargs": cls_kwargs,
                            "state_dict": create_model("small_cnn", seed=0,
                                                       **cls_kwargs).state_dict(),
                            "image_size": 32})
    return {"root": root, "images": images, "pairs": pairs, "bs": bs, "cls": cls}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("cxrbs: error: "), err
    assert not any(words in err[0] for words in WORKFLOW_WORDS), err[0]
    return err[0]


BAD_OPTIONS = [
    ("suppress", ["--size", "-5"], "--size -5: must be an integer in [32, 2048]"),
    ("suppress", ["--size", "100000"], "--size 100000"),
    ("suppress", ["--device", "gpu7"], "--device 'gpu7'"),
    ("predict", ["--batch-size", "0"], "--batch-size 0: must be an integer"),
    ("predict", ["--size", "8"], "--size 8"),
    ("train-bs", ["--model-arg", "width=abc"], "--model-arg width='abc': must be an integer"),
    ("train-bs", ["--model-arg", "depth=3"], "--model-arg depth=3: resnet_bs has no argument"),
    ("train-bs", ["--model-arg", "width=-4"], "--model-arg resnet_bs: resnet_bs: width must be"),
    ("train-bs", ["--epochs", "-1"], "--epochs -1: must be an integer >= 1"),
    ("train-bs", ["--epochs", "0"], "--epochs 0"),
    ("train-bs", ["--lr", "nan"], "--lr nan: must be a number > 0"),
    ("train-bs", ["--lr", "0"], "--lr 0.0"),
    ("train-bs", ["--crop-size", "8"], "--crop-size 8: must be an integer >= 16"),
    ("train-bs", ["--crop-size", "64", "--size", "32"], "--crop-size 64: larger than --size 32"),
    ("train-bs", ["--val-fraction", "0.7"], "--val-fraction 0.7: must be a number in (0, 0.5)"),
    ("train-bs", ["--n-pairs", "-1"], "--n-pairs -1"),
    ("train-bs", ["--patience", "0"], "--patience 0"),
    ("train-bs", ["--threads", "0"], "--threads 0"),
    ("train-bs", ["--seed", "-1"], "--seed -1"),
    ("train-bs", ["--amp", "fp16", "--device", "cpu"], "--amp fp16: needs a CUDA GPU"),
    ("train-cls", ["--weights", "missing.pth"], "--weights missing.pth: does not exist"),
    ("train-cls", ["--epochs", "-1"], "--epochs -1"),
    ("train-cls", ["--val-fraction", "0.9"], "--val-fraction 0.9"),
    ("train-cls", ["--patient-regex", "(oops"], "--patient-regex '(oops': not a valid regular"),
    ("train-cls", ["--model-arg", "widths=abc"], "--model-arg widths='abc'"),
    ("evaluate-bs", ["--batch-size", "-2"], "--batch-size -2"),
    ("phantoms", ["--size", "-5"], "--size -5"),
    ("phantoms", ["--n", "0"], "--n 0"),
]


def _argv(command: str, extra: list[str], fx: dict[str, Path], out: Path) -> list[str]:
    base = {
        "suppress": ["suppress", str(fx["images"]), "-o", str(out), "--model", str(fx["bs"])],
        "predict": ["predict", str(fx["images"]), "--model", str(fx["cls"]), "-o",
                    str(out / "p.csv")],
        "train-bs": ["train-bs", str(fx["pairs"]), "-o", str(out), "--size", "32"],
        "train-cls": ["train-cls", "--data", str(fx["root"]), "--classes", "a=0,b=1", "-o",
                      str(out), "--model", "small_cnn"],
        "evaluate-bs": ["evaluate-bs", str(fx["pairs"]), "-o", str(out), "--model",
                        str(fx["bs"])],
        "phantoms": ["phantoms", str(out), "--n", "2"],
    }[command]
    return ["-q", *base, *extra]


@pytest.mark.parametrize("command, extra, expected", BAD_OPTIONS,
                         ids=[f"{c}{''.join(e)}" for c, e, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_before_any_work(command: str, extra: list[str], expected: str,
                                                fixtures: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(fixtures["root"])
    out = tmp_path / "out"
    line = one_error(capsys, _argv(command, extra, fixtures, out))
    assert expected in line, line
    assert not out.exists(), "a bad option must stop the command before it writes anything"
    assert digest(fixtures["root"]) == before


def test_missing_pairs_folder_names_the_argument(fixtures: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error(capsys, ["train-bs", str(fixtures["images"]), "-o", str(tmp_path / "o")])
    assert "PAIRS_DIR" in line and "has no source/ folder" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("target", ["input", "model", "device", "folder"])
def test_predict_never_writes_over_an_input_or_a_device(target: str, fixtures: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(fixtures["root"])
    out = {"input": fixtures["images"] / "im1.png", "model": fixtures["cls"],
           "device": Path("/dev/null"), "folder": fixtures["images"]}[target]
    line = one_error(capsys, ["predict", str(fixtures["images"] / "im0.png"),
                              str(fixtures["images"] / "im1.png"), "--model",
                              str(fixtures["cls"]), "-o", str(out)])
    assert f"-o {out}" in line
    assert digest(fixtures["root"]) == before
    assert Path("/dev/null").is_char_device()


def test_suppress_output_equal_to_input_is_refused(fixtures: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error(capsys, ["suppress", str(fixtures["images"]), "-o", str(fixtures["images"]),
                              "--model", str(fixtures["bs"])])
    assert "is also an input" in line


def test_suppress_output_inside_input_is_not_read_back(fixtures: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for p in fixtures["images"].iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    argv = ["suppress", str(images), "-o", str(images / "out"), "--model", str(fixtures["bs"])]
    for _ in range(2):
        assert main(argv) == 0
    capsys.readouterr()
    written = sorted(p.name for p in (images / "out").rglob("*.png"))
    assert written == ["im0_bs.png", "im1_bs.png", "im2_bs.png"]
    assert not (images / "out" / "out").exists()


def test_progress_lines_without_a_terminal(fixtures: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """capsys's stderr is no terminal, as in a cluster log: no bar, but progress lines."""
    assert main(["suppress", str(fixtures["images"]), "-o", str(tmp_path / "s"), "--model",
                 str(fixtures["bs"])]) == 0
    err = capsys.readouterr().err
    assert "suppress: 3/3 image(s) done" in err
    assert main(["predict", str(fixtures["images"]), "--model", str(fixtures["cls"]),
                 "--batch-size", "1", "-o", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "predict: 3/3 image(s) done" in err
    assert main(["-q", "predict", str(fixtures["images"]), "--model", str(fixtures["cls"])]) == 0
    captured = capsys.readouterr()
    assert "done" not in captured.err and captured.out.startswith("image,p_abnormal\n")


def test_predict_column_names_the_checkpoints_positive_class(
    fixtures: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = torch.load(fixtures["cls"], map_location="cpu", weights_only=True)
    path = tmp_path / "tb.pt"
    atomic.save_torch(path, {**ckpt, "class_names": ["normal", "tb"]})
    assert main(["-q", "predict", str(fixtures["images"] / "im0.png"), "--model", str(path)]) == 0
    assert capsys.readouterr().out.startswith("image,p_tb\n")


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())  # type: ignore[union-attr]


def test_help_says_what_model_scale_returns_and_what_info_shows() -> None:
    text = _help("suppress")
    for words in ("squashed", "contrast-stretched", "1st-99th percentile", "8-bit"):
        assert words in text, words
    info = _help("info")
    assert "MONOCHROME1 is shown inverted" not in info and "as stored" in info
