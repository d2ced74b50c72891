"""Property-based: any flags and values on the command line give exit 0 or 2, never a traceback,
and never change an input file (issue 15).

Hypothesis picks a subcommand, a random subset of its own flags (read from the parser, so a new
flag is fuzzed the day it is added) with random values, random positionals and sometimes junk.
Inputs are tiny PNGs and tiny checkpoints; folders that would start training are never valid
(no source/ and target/), so no example trains a model.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxrbs.cli import build_parser, main
from cxrbs.core import atomic
from cxrbs.data.io import write_png
from cxrbs.models import create_model

_SUBPARSERS = next(a for a in build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction))
COMMANDS: dict[str, argparse.ArgumentParser] = dict(_SUBPARSERS.choices)
_counter = itertools.count()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fuzz_inputs")
    rng = np.random.default_rng(1)
    for i in range(2):
        write_png(root / "images" / f"im{i}.png", rng.uniform(size=(36, 44)).astype(np.float32),
                  bits=8)
    (root / "notes.txt").write_text("not an image\n")
    kwargs = {"width": 4, "n_blocks": 1, "output": "residual"}
    atomic.save_torch(root / "bs.pt", {
        "model_name": "resnet_bs", "model_kwargs": kwargs, "data": {"val_shape": [1, 2, 32, 32]},
        "model_state": create_model("resnet_bs", seed=0, **kwargs).state_dict()})
    cls_kwargs = {"widths": [4, 8, 8, 8]}
    atomic.save_torch(root / "cls.pt", {
        "model_name": "small_cnn", "model_kwargs": cls_kwargs, "image_size": 32,
        "state_dict": create_model("small_cnn", seed=0, **cls_kwargs).state_dict()})
    yield {"root": root, "images": root / "images", "image": root / "images" / "im0.png",
           "bs": root / "bs.pt", "cls": root / "cls.pt", "text": root / "notes.txt",
           "out_root": tmp_path_factory.mktemp("fuzz_out")}
    torch.set_num_threads(before)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


SPECIAL = ["0", "-1", "-5", "1", "2", "3", "32", "0.5", "0.7", "1e-3", "nan", "inf", "-inf", "",
           "abc", "9" * 14, "width=abc", "width=8", "widths=4,8,8,8", "n_blocks=1", "x=", "=3",
           "normal=0,abnormal=1", "a=0", "(oops", r"^(\d+)", "cpu", "cuda", "cuda:7", "auto",
           "gpu", "png", "dicom", "none", "fp16", "bf16", "shenzhen", "sgd"]
PATH_KEYS = ["images", "image", "bs", "cls", "text", "missing", "OUT", "OUT_FILE", "DEVNULL"]


def values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(SPECIAL), st.integers(-3, 6).map(str),
                     st.sampled_from(PATH_KEYS), st.text(max_size=6))


#: A working command line per subcommand (training ones point at a folder they refuse).
BASE = {
    "models": ["models"],
    "info": ["info", "image"],
    "phantoms": ["phantoms", "OUT", "--n", "2", "--size", "32"],
    "suppress": ["suppress", "images", "-o", "OUT", "--model", "bs"],
    "predict": ["predict", "images", "--model", "cls"],
    "check-config": ["check-config", "text"],
    "evaluate-bs": ["evaluate-bs", "images", "-o", "OUT", "--model", "bs"],
    "train-bs": ["train-bs", "images", "-o", "OUT", "--epochs", "1", "--n-pairs", "2"],
    "train-cls": ["train-cls", "--data", "images", "--classes", "normal=0,abnormal=1", "-o",
                  "OUT", "--model", "small_cnn", "--epochs", "1"],
}


def flag_values(action: argparse.Action) -> st.SearchStrategy[str]:
    """Mostly values the flag accepts (its choices, its default), often junk."""
    good = [str(c) for c in (action.choices or [])]
    if action.default not in (None, False, argparse.SUPPRESS):
        good.append(str(action.default))
    return st.one_of(st.sampled_from(good), values()) if good else values()


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 9)) == 0:  # sometimes plain junk
        return draw(st.lists(st.one_of(values(), st.sampled_from(["-o", "--", "-v", "-q"])),
                             max_size=5))
    name = draw(st.sampled_from(sorted(COMMANDS)))
    actions = {a.option_strings[-1]: a for a in COMMANDS[name]._actions
               if a.option_strings and a.dest not in ("help", "verbose", "quiet")}
    argv = list(BASE[name])
    for flag in draw(st.lists(st.sampled_from(sorted(actions)), max_size=4, unique=True)):
        action = actions[flag]
        if action.nargs == 0:  # store_true
            argv.append(flag)
        else:
            argv += [flag, draw(flag_values(action))]
    if draw(st.integers(0, 3)) == 0:
        argv += draw(st.lists(st.sampled_from(PATH_KEYS[:6]), min_size=1, max_size=2))
    if draw(st.integers(0, 5)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(values()))
    return argv


def _resolve(argv: list[str], inputs: dict[str, Path]) -> list[str]:
    out = inputs["out_root"] / f"run{next(_counter)}"
    table = {**{k: str(v) for k, v in inputs.items()}, "OUT": str(out),
             "missing": str(out.with_name(out.name + "_missing.png")),
             "OUT_FILE": str(out.with_suffix(".csv")), "DEVNULL": "/dev/null"}
    resolved = [table.get(arg, arg) for arg in argv]
    return resolved


@settings(max_examples=int(__import__("os").environ.get("CXRBS_FUZZ_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_any_command_line_exits_0_or_2_without_traceback(
    argv: list[str], inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(inputs["root"])
    # Junk may land where a relative output path goes: keep it out of the repository.
    with contextlib.chdir(inputs["out_root"]):
        rc = main(["-q", *_resolve(argv, inputs)])
    captured = capsys.readouterr()
    assert rc in (0, 2), (argv, rc, captured.err[-2000:])
    assert "Traceback" not in captured.err, (argv, captured.err[-2000:])
    errors = [line for line in captured.err.splitlines() if line.startswith("cxrbs: error:")]
    assert not any(w in line for w in ("set it to null", "in the config", "config key",
                                       "your config") for line in errors), errors
    assert digest(inputs["root"]) == before, argv
    assert Path("/dev/null").is_char_device()
