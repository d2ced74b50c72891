"""Every ``cxrbs`` option checked before any work starts, in the command line's own words.

A bad value found after the images were loaded, augmented and written costs minutes and leaves
half an output folder behind; found here it costs nothing. Numeric limits come from the config
schema (the same key's rule: one validation source), so ``--epochs`` and ``bs.train.epochs``
cannot disagree. Messages name the flag, the value and the fix, never a config key.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrbs.config_checks import model_kwarg_problems
from cxrbs.core.config import load_schema
from cxrbs.core.schema_rules import rule_problem, schema_rule
from cxrbs.core.errors import CxrbsError

#: Flag (argparse dest) -> the config key whose schema rule it shares, per command.
SCHEMA_KEYS: dict[str, dict[str, str]] = {
    "train-bs": {"size": "image_size", "epochs": "bs.train.epochs",
                 "batch_size": "bs.train.batch_size", "lr": "bs.train.lr",
                 "patience": "bs.train.early_stopping_patience",
                 "crop_size": "bs.train.crop_size", "n_pairs": "bs.augment.n_pairs",
                 "val_fraction": "bs.val_fraction", "seed": "seed",
                 "threads": "resources.train_threads"},
    "evaluate-bs": {"size": "image_size", "batch_size": "bs.suppress_batch_size"},
    "suppress": {"size": "image_size", "threads": "resources.train_threads",
                 "workers": "resources.train_threads"},
    "train-cls": {"size": "image_size", "epochs": "cls.pretrain.epochs",
                  "batch_size": "cls.pretrain.batch_size", "lr": "cls.pretrain.lr",
                  "patience": "cls.pretrain.early_stopping_patience",
                  "val_fraction": "cls.pretrain.val_fraction", "seed": "seed",
                  "threads": "resources.train_threads"},
    "predict": {"size": "cls.input_size", "batch_size": "bs.suppress_batch_size"},
    "phantoms": {"size": "datasets.*.synthetic.size", "seed": "seed"},
}
#: Limits the schema leaves open but a command line needs (memory, numpy's seed range).
EXTRA_LIMITS: dict[str, dict[str, float]] = {
    "size": {"maximum": 4096},
    "seed": {"maximum": 2**32 - 1},
    "n": {"minimum": 1, "maximum": 100_000},
    "batch_size": {"maximum": 65_536},
    "threads": {"maximum": 1024},
    "workers": {"maximum": 1024},
}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_number(flag: str, value: Any, rule: dict[str, Any], fix: str = "") -> None:
    """``value`` against a schema rule (``core.schema_rules``); a flag not given passes."""
    if value is None:
        return
    problem = rule_problem(value, {"type": "number", **rule})
    if problem:
        raise CxrbsError(f"{flag} {value}: {problem}" + (f"; {fix}" if fix else ""))


def check_numbers(command: str, args: argparse.Namespace) -> None:
    """Every numeric option of ``command`` against its config key's schema rule."""
    for dest, key in SCHEMA_KEYS.get(command, {}).items():
        check_number(flag_name(dest), getattr(args, dest, None), _stricter(schema_rule(key), dest))
    if command == "phantoms":
        check_number("--n", args.n, {"type": "integer", **EXTRA_LIMITS["n"]})


def _stricter(rule: dict[str, Any], dest: str) -> dict[str, Any]:
    """The schema's rule, narrowed (never widened) by the command line's extra limits."""
    out = dict(rule)
    for bound, value in EXTRA_LIMITS.get(dest, {}).items():
        if bound not in out:
            out[bound] = value
        else:
            out[bound] = max(out[bound], value) if bound == "minimum" else min(out[bound], value)
    return out


def check_device(value: str) -> None:
    if not _DEVICE.match(str(value).strip().lower()):
        raise CxrbsError(f"--device {value!r}: unknown device; use auto, cpu, cuda or cuda:N")
    if str(value).strip().lower().startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CxrbsError(f"--device {value}: this torch sees no CUDA GPU; use --device cpu "
                             "or auto (or install a CUDA build of torch)")


def check_inputs(flag: str, paths: Iterable[Path], *, folders: bool = False,
                 what: str = "source/ and target/") -> None:
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise CxrbsError(f"{flag} {path}: does not exist; check the path")
        if folders and not path.is_dir():
            raise CxrbsError(f"{flag} {path}: is not a folder; give the folder that holds {what}")


def check_file(flag: str, path: Path | None, what: str) -> None:
    if path is None:
        return
    if not Path(path).exists():
        raise CxrbsError(f"{flag} {path}: does not exist; give the path of {what}")
    if not Path(path).is_file():
        raise CxrbsError(f"{flag} {path}: is not a file; give the path of {what}")


def check_output_folder(flag: str, outdir: Path, inputs: Sequence[Path]) -> None:
    """A folder output must not be a file, nor one of the inputs (that would mix them)."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise CxrbsError(f"{flag} {out}: is a file, not a folder; give a folder to write into")
    resolved = out.resolve()
    for item in inputs:
        if Path(item).resolve() == resolved:
            raise CxrbsError(f"{flag} {out}: is also an input; write into another folder "
                             f"(e.g. {flag} {out.name}_out)")


def check_output_file(flag: str, output: Path | None, inputs: Sequence[Path]) -> None:
    """A file output must not replace an input, a folder or a device (``-o /dev/null``)."""
    if output is None:
        return
    out = Path(output)
    if out.exists() and (out.is_dir() or not out.is_file()):
        kind = "a folder" if out.is_dir() else "not a regular file (a device?)"
        raise CxrbsError(f"{flag} {out}: is {kind}; give a new .csv file name, or leave out "
                         f"{flag} to print to stdout")
    resolved = out.resolve()
    for item in inputs:
        item = Path(item)
        if item.resolve() == resolved:
            raise CxrbsError(f"{flag} {out}: is one of the inputs and would be overwritten; "
                             "choose another file name")


def parse_value(text: str) -> Any:
    """``8`` -> 8, ``1e-9`` -> 1e-09, ``true`` -> True, ``none`` -> None, ``4,8,8`` -> [4, 8, 8]."""
    if "," in text:
        return [parse_value(part) for part in text.split(",") if part.strip()]
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def model_args(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--model-arg KEY=VALUE`` options as a dict, each value parsed by :func:`parse_value`."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxrbsError(f"--model-arg {item!r} is not key=value (e.g. --model-arg width=32)")
        out[key.strip()] = parse_value(value)
    return out


def check_model_args(model: str, kwargs: dict[str, Any]) -> None:
    """Unknown names and wrong types found from the constructor's signature, before any data."""
    problems = model_kwarg_problems(model, kwargs)
    if problems:
        key, text = problems[0]
        shown = f"{key}={kwargs[key]!r}" if key in kwargs else model
        raise CxrbsError(f"--model-arg {shown}: {text}")


def check_regex(flag: str, pattern: str | None) -> None:
    if pattern is None:
        return
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise CxrbsError(f"{flag} {pattern!r}: not a valid regular expression ({exc})") from None
    if compiled.groups < 1:
        raise CxrbsError(f"{flag} {pattern!r}: needs a group ( ) around the patient id, "
                         "e.g. '^(\\d{8})_'")


def check_pairs_dir(folder: Path) -> None:
    """source/ and target/ directly below, or one level deeper (as data.manifests finds them)."""
    for name in ("source", "target"):
        if (folder / name).is_dir():
            continue
        if len([p for p in folder.glob(f"*/{name}") if p.is_dir()]) == 1:
            continue
        raise CxrbsError(f"PAIRS_DIR {folder}: has no {name}/ folder; each PAIRS_DIR needs "
                         "source/ and target/ sub-folders with the same file names")


def check_amp(amp: str, device: str) -> None:
    if amp != "fp16":
        return
    import torch

    if device.strip().lower().startswith("cpu") or not torch.cuda.is_available():
        raise CxrbsError("--amp fp16: needs a CUDA GPU; use --amp bf16 or none on a CPU")


# ----------------------------------------------------------------------------- per command


def check_phantoms(args: argparse.Namespace) -> None:
    check_numbers("phantoms", args)
    out = Path(args.outdir)
    if out.exists() and not out.is_dir():
        raise CxrbsError(f"OUTDIR {out}: is a file, not a folder; give a folder to write into")


def check_train_bs(args: argparse.Namespace, model_kwargs: dict[str, Any]) -> None:
    check_inputs("PAIRS_DIR", args.pairs_dirs, folders=True)
    for folder in args.pairs_dirs:
        check_pairs_dir(Path(folder))
    check_output_folder("-o", Path(args.output), args.pairs_dirs)
    check_numbers("train-bs", args)
    if args.crop_size is not None and args.crop_size > args.size:
        raise CxrbsError(f"--crop-size {args.crop_size}: larger than --size {args.size}; lower "
                         "it or leave it out (whole images)")
    check_device(args.device)
    check_amp(args.amp, args.device)
    check_model_args(args.arch, model_kwargs)


def check_evaluate_bs(args: argparse.Namespace) -> None:
    check_inputs("PAIRS_DIR", args.pairs_dirs, folders=True)
    for folder in args.pairs_dirs:
        check_pairs_dir(Path(folder))
    check_file("--model", args.model, "a bone-suppression checkpoint (best.pt)")
    check_output_folder("-o", Path(args.output), args.pairs_dirs)
    check_numbers("evaluate-bs", args)


def check_suppress(args: argparse.Namespace) -> None:
    from cxrbs.bs.bundled import is_bundled_name

    check_inputs("INPUT", args.inputs)
    if args.model is None or not is_bundled_name(str(args.model)):
        check_file("--model", args.model, "a bone-suppression checkpoint (best.pt) or the name "
                   "of a bundled model (`cxrbs models`)")
    check_output_folder("-o", Path(args.output), args.inputs)
    check_numbers("suppress", args)
    check_device(args.device)


def check_train_cls(args: argparse.Namespace, model_kwargs: dict[str, Any]) -> None:
    source = args.data if args.data is not None else args.layout_dir
    check_output_folder("-o", Path(args.output), [source] if source is not None else [])
    check_numbers("train-cls", args)
    check_device(args.device)
    check_file("--weights", args.weights, "a torchvision VGG-16 state dict (vgg16-397923af.pth)")
    check_model_args(args.model, model_kwargs)


def check_predict(args: argparse.Namespace) -> None:
    check_inputs("INPUT", args.inputs)
    if not Path(args.model).is_file():  # the wording tests and users already know
        raise CxrbsError(f"classifier checkpoint {args.model} does not exist: "
                         "check the --model path")
    check_output_file("-o", args.output, [*args.inputs, Path(args.model)])
    check_numbers("predict", args)
