"""The ``cxrbs`` console script: the workflow's steps, one at a time, on your own folders and files.

Every subcommand calls the same package functions as the Snakemake workflow, so a model trained
here is interchangeable with one trained there. Problems a user can fix (a corrupt file, a missing
model) print one line ``cxrbs: error: ...`` and exit with status 2; heavy imports (torch) happen
inside the subcommands so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxrbs import __version__
from cxrbs.core.errors import CxrbsError

log = logging.getLogger("cxrbs")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
PHANTOM_KINDS = ("pairs", "des", "shenzhen", "montgomery", "cxr8")  # = cxrbs.data.phantoms.PHANTOM_KINDS
BS_ARCHS = ("resnet_bs", "ae_bs", "convnet_bs", "rl_bs")
CLS_MODELS = ("vgg16", "vgg16_bn", "small_cnn")
#: Model arguments the study's config (config/config.yaml, bs.architectures) sets per architecture.
BS_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet_bs": {"output": "residual", "width": 64, "n_blocks": 16},
    "convnet_bs": {"output": "direct", "l1": 1.0e-9},
    "ae_bs": {"output": "direct"},
    "rl_bs": {"output": "direct"},
}
#: The study's preprocessing (config: preprocess.low_percentile / high_percentile).
LOW_PCT, HIGH_PCT = 1.0, 99.0

_handler: logging.Handler | None = None


# ----------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _report(exc: BaseException) -> None:
    print(f"cxrbs: error: {_one_line(exc)}", file=sys.stderr, flush=True)


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Only the package's logger: libraries' debug chatter stays out of a researcher's terminal."""
    global _handler
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "cxrbs: %(message)s"
    if _handler is not None:
        log.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter(fmt))
    log.addHandler(_handler)
    log.setLevel(level)
    log.propagate = False


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching: never in logs, pipes or with --quiet."""
    return not args.quiet and sys.stderr.isatty()


def _parse_value(text: str) -> Any:
    """``8`` -> 8, ``1e-9`` -> 1e-09, ``true`` -> True, ``none`` -> None, ``4,8,8`` -> [4, 8, 8]."""
    if "," in text:
        return [_parse_value(part) for part in text.split(",") if part.strip()]
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


def _model_args(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CxrbsError(f"--model-arg {item!r} is not key=value (e.g. --model-arg width=32)")
        out[key.strip()] = _parse_value(value)
    return out


def _classes(text: str) -> dict[str, int]:
    classes: dict[str, int] = {}
    for item in text.split(","):
        name, sep, label = item.partition("=")
        if not sep or not name.strip() or label.strip() not in ("0", "1"):
            raise CxrbsError(f"--classes {text!r}: expected folder=label pairs with labels 0/1, "
                             "e.g. --classes normal=0,abnormal=1")
        classes[name.strip()] = int(label)
    if set(classes.values()) != {0, 1}:
        raise CxrbsError(f"--classes {text!r} needs at least one folder per label 0 and 1")
    return classes


def _dataset_names(folders: Sequence[Path]) -> list[str]:
    """Folder names as data set names, made unique (two folders called 'pairs' stay apart)."""
    names: list[str] = []
    for folder in folders:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(folder).resolve().name) or "data"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _prepare_sets(folders: Sequence[Path], data_dir: Path, *, layout: str, size: int,
                  progress: bool, **options: Any) -> list[tuple[str, Path, Path]]:
    """Manifest + preprocessed stack per folder, as the workflow's data stage builds them."""
    from cxrbs.core.atomic import write_csv
    from cxrbs.data.stacks import build_stack
    from cxrbs.data.manifests import build_manifest

    prepared = []
    for folder, name in zip(folders, _dataset_names(folders), strict=True):
        manifest = build_manifest(Path(folder), layout, **options)
        stack = build_stack(manifest, data_dir / name / "images.npy", size=size, low_pct=LOW_PCT,
                            high_pct=HIGH_PCT, progress=progress)
        write_csv(data_dir / name / "manifest.csv", manifest)
        log.info("%s: %d image(s) from %s", name, len(manifest), folder)
        prepared.append((name, data_dir / name / "manifest.csv", stack))
    return prepared


# ----------------------------------------------------------------------------- subcommands


def cmd_info(args: argparse.Namespace) -> int:
    from pydicom.uid import UID

    from cxrbs.data.io import image_info

    infos, failed = [], 0
    for path in args.files:
        try:
            info = image_info(path)
        except CxrbsError as exc:
            _report(exc)
            failed += 1
            continue
        if info.get("transfer_syntax"):
            info["transfer_syntax_name"] = UID(info["transfer_syntax"]).name
        infos.append(info)
        if not args.json:
            print(_info_block(info))
    if args.json:
        print(json.dumps(infos, indent=2))
    return EXIT_USER_ERROR if failed else 0


def _info_block(info: dict[str, Any]) -> str:
    syntax = info.get("transfer_syntax")
    lines = [
        info["file"],
        f"  format:               {info['format']}",
        f"  modality:             {info['modality']}",
        f"  size:                 {info['width']} x {info['height']} pixels (width x height"
        + ("; DICOM Columns x Rows)" if info["format"] == "DICOM" else ")"),
        f"  bit depth:            {info['bit_depth']}",
        f"  photometric:          {info['photometric']}",
        f"  stored value range:   {info['min']} .. {info['max']}",
        f"  transfer syntax:      "
        + (f"{info.get('transfer_syntax_name', '')} ({syntax})" if syntax else "n/a (not DICOM)"),
    ]
    return "\n".join(lines) + "\n"


def cmd_phantoms(args: argparse.Namespace) -> int:
    from cxrbs.data.phantoms import write_layout

    outdir = write_layout(args.kind, Path(args.outdir), args.n, size=args.size, seed=args.seed)
    n_files = sum(1 for p in outdir.rglob("*.png") if not p.name.startswith("."))
    print(f"wrote {args.n} synthetic {args.kind} case(s) ({n_files} PNG files, {args.size}x"
          f"{args.size}) to {outdir}")
    return 0


def cmd_train_bs(args: argparse.Namespace) -> int:
    import numpy as np

    from cxrbs.bs.pairs import prepare_pairs
    from cxrbs.bs.train import TrainConfig, train_bs

    out = Path(args.output)
    progress = _progress(args)
    kwargs = {**BS_ARCH_DEFAULTS.get(args.arch, {}), **_model_args(args.model_arg)}
    sets = _prepare_sets(args.pairs_dirs, out / "data", layout="paired", size=args.size,
                         progress=progress)
    data = out / "data"
    counts = prepare_pairs([m for _, m, _ in sets], [s for _, _, s in sets],
                           train_out=data / "train.npy", val_out=data / "val.npy",
                           split_out=data / "split.csv", val_fraction=args.val_fraction,
                           n_pairs=args.n_pairs, seed=args.seed, progress=progress)
    cfg = TrainConfig.from_mapping({
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "crop_size": args.crop_size, "amp": args.amp, "seed": args.seed, "threads": args.threads,
        "device": args.device, "early_stopping_patience": args.patience,
    })
    summary = train_bs(args.arch, kwargs, np.load(data / "train.npy", mmap_mode="r"),
                       np.load(data / "val.npy", mmap_mode="r"), cfg, out, progress=progress)
    print(f"trained {args.arch} on {counts['train']} augmented pairs from "
          f"{counts['train_originals']} originals ({counts['val']} validation): best val loss "
          f"{summary['best_val_loss']:.5f} at epoch {summary['best_epoch']} of "
          f"{summary['epochs_run']} ({summary['stop_reason']})")
    print(f"model: {out / 'best.pt'}")
    return 0


def cmd_evaluate_bs(args: argparse.Namespace) -> int:
    import pandas as pd

    from cxrbs.core.atomic import write_csv
    from cxrbs.bs.evaluate import evaluate_model_on_pairs, summarize_evaluations
    from cxrbs.bs.suppress import model_image_size, resolve_model
    from cxrbs.bs.train import load_bs_model

    model_path = resolve_model(args.model)
    _, meta = load_bs_model(model_path)
    arch = str(meta.get("model_name") or "model")
    size = args.size or model_image_size(meta)
    out = Path(args.output)
    sets = _prepare_sets(args.pairs_dirs, out / "data", layout="paired", size=size,
                         progress=_progress(args))
    frames = []
    for name, manifest, stack in sets:
        for path, label in ((None, "identity"), (model_path, arch)):
            frames.append(evaluate_model_on_pairs(path, stack, manifest, arch=label, test_set=name,
                                                  batch_size=args.batch_size))
    per_image = pd.concat(frames, ignore_index=True)
    summary = summarize_evaluations(frames)
    write_csv(out / "per_image.csv", per_image)
    write_csv(out / "summary.csv", summary)
    print(_summary_table(summary))
    print(f"\nper-image metrics: {out / 'per_image.csv'}\nsummary: {out / 'summary.csv'}")
    return 0


def _summary_table(summary: Any) -> str:
    """Mean, SD and 95% CI per test set, metric and model: the identity row is the bar to beat."""
    rows = summary.sort_values(["test_set", "metric", "arch"], kind="stable")
    table = rows.assign(
        mean=rows["mean"].map(lambda v: f"{v:.4f}"),
        sd=rows["sd"].map(lambda v: f"{v:.4f}"),
        ci95=[f"[{lo:.4f}, {hi:.4f}]"
              for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)],
    )[["test_set", "metric", "arch", "mean", "sd", "ci95", "n"]]
    return table.to_string(index=False)


def cmd_suppress(args: argparse.Namespace) -> int:
    from cxrbs.bs.suppress import resolve_model, suppress_files

    model_path = resolve_model(args.model)
    failures: list[Path] = []

    def on_error(path: Path, exc: CxrbsError) -> None:
        _report(exc)
        failures.append(path)

    written = suppress_files(args.inputs, Path(args.output), model_path, fmt=args.format,
                             full_resolution=not args.model_scale, size=args.size,
                             progress=_progress(args), device=args.device, on_error=on_error)
    print(f"wrote {len(written)} bone-suppressed image(s) to {args.output}"
          + (f"; {len(failures)} input(s) failed (see above)" if failures else ""))
    return EXIT_USER_ERROR if failures else 0


def cmd_train_cls(args: argparse.Namespace) -> int:
    import numpy as np

    from cxrbs.cls.train import ClsTrainConfig, train_classifier
    from cxrbs.data.stacks import load_stack, read_manifest
    from cxrbs.data.splits import patient_split

    folder, layout, options = _cls_source(args)
    out = Path(args.output)
    [(name, manifest_path, stack_path)] = _prepare_sets([folder], out / "data", layout=layout,
                                                        size=args.size, progress=_progress(args),
                                                        **options)
    train_cfg = {"epochs": args.epochs, "lr": args.lr, "optimizer": args.optimizer,
                 "batch_size": args.batch_size, "val_fraction": args.val_fraction,
                 "device": args.device}
    if args.patience is not None:
        train_cfg["early_stopping_patience"] = args.patience
    cfg = ClsTrainConfig.from_dict(train_cfg, seed=args.seed, threads=args.threads)
    # As the workflow's pretraining (cxrbs.cls.pipeline.pretrain): label-stratified patient split.
    frame = read_manifest(manifest_path)
    labels = frame["label"].astype(int).to_numpy()
    patients = (name + ":" + frame["patient_id"].astype(str)).to_numpy()
    is_val = patient_split(patients, val_fraction=cfg.val_fraction, seed=cfg.seed, labels=labels)
    summary = train_classifier(args.model, _model_args(args.model_arg),
                               np.asarray(load_stack(stack_path)[:, :1]), labels, patients, cfg,
                               out, torchvision_weights=args.weights, val_mask=is_val,
                               progress=_progress(args))
    auc = summary.get("best_val_auc")
    print(f"trained {args.model} on {summary['n_train']} image(s) ({summary['n_train_patients']} "
          f"patients), validated on {summary['n_val']}: best epoch {summary['best_epoch']}, "
          f"val AUC {'n/a' if auc is None else f'{auc:.3f}'}\nmodel: {out / 'model.pt'}")
    return 0


def _cls_source(args: argparse.Namespace) -> tuple[Path, str, dict[str, Any]]:
    """(folder, manifest layout, layout options) from --data/--classes or --layout DIR."""
    if (args.data is None) == (args.layout is None):
        raise CxrbsError("train-cls needs either --data DIR --classes normal=0,abnormal=1 (class "
                         "folders) or --layout shenzhen|montgomery DIR")
    if args.layout is not None:
        if args.layout_dir is None:
            raise CxrbsError(f"--layout {args.layout} needs the collection's folder, e.g. "
                             f"cxrbs train-cls --layout {args.layout} path/to/images -o OUTDIR")
        return Path(args.layout_dir), args.layout, {}
    if not args.classes:
        raise CxrbsError("--data needs --classes, e.g. --classes normal=0,abnormal=1")
    options: dict[str, Any] = {"classes": _classes(args.classes)}
    if args.patient_regex:
        options["patient_regex"] = args.patient_regex
    return Path(args.data), "class_folders", options


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrbs.bs.suppress import iter_inputs
    from cxrbs.cls.predict import predict_files
    from cxrbs.cls.train import load_classifier
    from cxrbs.core.atomic import write_csv

    if not Path(args.model).is_file():
        raise CxrbsError(f"classifier checkpoint {args.model} does not exist: "
                         "check the --model path")
    model, meta = load_classifier(Path(args.model))
    files = list(iter_inputs(args.inputs))
    if not files:
        raise CxrbsError("no input images found (PNG, JPEG, TIFF or DICOM)")
    failed: list[Path] = []

    def skip(path: Path, exc: CxrbsError) -> None:
        _report(exc)
        failed.append(path)

    # The workflow's own preprocessing route (cxrbs.cls.predict), so the numbers agree with it.
    frame = predict_files(model, meta, files, batch_size=args.batch_size, size=args.size,
                          on_error=skip)
    if args.output:
        write_csv(args.output, frame)
        print(f"wrote {len(frame)} prediction(s) to {args.output}")
    else:
        sys.stdout.write(frame.to_csv(index=False))
    return EXIT_USER_ERROR if failed else 0


def _checkpoint_size(value: Any, default: int = 256) -> int:
    """The classifier's training side (an int, or [h, w] for non-square stacks)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return int(value) if value else default


# ----------------------------------------------------------------------------- parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help (where there is one worth showing); description line breaks kept."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        if not action.option_strings:  # positionals have no default worth showing
            return text
        return f"{text} (default: %(default)s)"


def _common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-v/-q before or after the command; a sub-command must not reset what the top level set."""
    p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                   help="more detail in the log (debug messages, timestamps)")
    p.add_argument("-q", "--quiet", action="store_true",
                   default=False if top else argparse.SUPPRESS,
                   help="only warnings and errors; no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrbs", formatter_class=_Formatter,
        description="Chest X-ray bone suppression and TB classification (Rajaraman et al., "
                    "Diagnostics 2021): the workflow's steps as commands.",
        epilog="Run `cxrbs COMMAND --help` for the options of one command.\n"
               "Exit status: 0 success, 2 a problem with the input or options (one line on "
               "stderr says what and how to fix it), 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"cxrbs {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_info(sub)
    _add_phantoms(sub)
    _add_train_bs(sub)
    _add_evaluate_bs(sub)
    _add_suppress(sub)
    _add_train_cls(sub)
    _add_predict(sub)
    return parser


def _sub(sub: Any, name: str, help_: str, description: str, func: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description, formatter_class=_Formatter)
    _common(p)
    p.set_defaults(func=func)
    return p


def _add_info(sub: Any) -> None:
    p = _sub(sub, "info", "describe chest X-ray files (DICOM, PNG, JPEG, TIFF)",
             "Print what cxrbs reads from each file: modality, size, bit depth, photometric "
             "interpretation (MONOCHROME1 is shown inverted), stored value range and DICOM "
             "transfer syntax. Useful to check an export before training or suppression.",
             cmd_info)
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text blocks")


def _add_phantoms(sub: Any) -> None:
    p = _sub(sub, "phantoms", "write synthetic chest radiographs in a real data set's layout",
             "Synthetic PA chest radiographs (soft tissue + bone shadows + noise) written in the "
             "folder layout of a public data set, to try the tools without real data.\n"
             "  pairs       BSE-JSRT-style source/ and target/ (bone-suppressed) pairs\n"
             "  des         dual-energy-style pairs from 'another institution'\n"
             "  shenzhen    CHNCXR_####_L.png, L = 1 for TB\n"
             "  montgomery  MCUCXR_####_L.png\n"
             "  cxr8        normal/ and abnormal/ folders, PPPPPPPP_FFF.png (patient, follow-up)",
             cmd_phantoms)
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write into (created if needed)")
    p.add_argument("--n", type=int, required=True, help="number of images (pairs for pairs/des)")
    p.add_argument("--kind", choices=PHANTOM_KINDS, default="pairs", help="data set layout")
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")


def _add_train_bs(sub: Any) -> None:
    p = _sub(sub, "train-bs", "train a bone-suppression model on paired radiographs",
             "Train a bone-suppression model as the workflow does: each PAIRS_DIR holds source/ "
             "(radiographs) and target/ (bone-suppressed, e.g. BSE-JSRT) with matching file "
             "names. Images are resized and contrast-stretched (1st-99th percentile), split by "
             "patient into training and validation, the training side is augmented, and the "
             "model is trained with MAE + MS-SSIM loss, early stopping on validation loss.\n"
             "Writes OUTDIR/best.pt (use it with evaluate-bs and suppress), last.pt (rerunning "
             "the same command resumes from it), history.csv, train_summary.json and data/.",
             cmd_train_bs)
    p.add_argument("pairs_dirs", nargs="+", type=Path, metavar="PAIRS_DIR",
                   help="folder(s) with source/ and target/ sub-folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--arch", choices=BS_ARCHS, default="resnet_bs",
                   help="architecture (resnet_bs was the study's best)")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="architecture argument, repeatable, e.g. --model-arg width=32 "
                        "--model-arg n_blocks=8 (lists: widths=16,32,64); defaults are the study's")
    p.add_argument("--size", type=int, default=256, help="image side after preprocessing")
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per optimisation step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--crop-size", type=int, default=None,
                   help="train on random square crops of this side (faster); default whole images")
    p.add_argument("--n-pairs", type=int, default=4500,
                   help="training pairs after augmentation (the study used 4500)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of patients held out for validation")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                   help="mixed precision (bf16 is faster on recent CPUs and GPUs)")
    p.add_argument("--seed", type=int, default=13,
                   help="seed of the split, augmentation and training")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _add_evaluate_bs(sub: Any) -> None:
    p = _sub(sub, "evaluate-bs", "score a bone-suppression model on paired test images",
             "Compare the model's output with the reference bone-suppressed image of each pair: "
             "MAE, PSNR, SSIM, MS-SSIM and bone suppression ratio (BSR), per image and as mean, "
             "SD and 95% confidence interval. The identity baseline (the unchanged radiograph "
             "taken as the answer) is scored beside the model: a useful model beats it.\n"
             "Writes OUTDIR/per_image.csv and OUTDIR/summary.csv and prints the summary.",
             cmd_evaluate_bs)
    p.add_argument("pairs_dirs", nargs="+", type=Path, metavar="PAIRS_DIR",
                   help="test folder(s) with source/ and target/ sub-folders")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT",
                   help="checkpoint (best.pt); default: the workflow's results/bs/best.json choice")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--size", type=int, default=None,
                   help="image side for evaluation (default: the size the model was trained at)")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass")


def _add_suppress(sub: Any) -> None:
    p = _sub(sub, "suppress", "remove bone shadows from chest X-rays (PNG, JPEG, TIFF, DICOM)",
             "Bone-suppress radiographs with a trained model. By default the result has the "
             "input's own resolution: the model estimates the bone shadows at its working size "
             "(e.g. 256x256) and they are subtracted from the original, keeping its fine detail. "
             "--model-scale instead returns the model's output as in the study (e.g. 256x256).\n"
             "Outputs are named NAME_bs.png (16-bit at full resolution) or NAME_bs.dcm: a new "
             "DICOM series (ImageType DERIVED) in the original patient's study.\n"
             "For research only; not for diagnostic use.",
             cmd_suppress)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT",
                   help="checkpoint (best.pt); default: the workflow's choice in "
                        "results/bs/best.json (run from the workflow folder)")
    p.add_argument("--format", choices=("png", "dicom"), default="png",
                   help="output format; dicom needs DICOM inputs (their tags are copied)")
    p.add_argument("--model-scale", action="store_true",
                   help="output at the model's working size instead of the input's resolution")
    p.add_argument("--size", type=int, default=None,
                   help="model working size (default: the size the model was trained at)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def _add_train_cls(sub: Any) -> None:
    p = _sub(sub, "train-cls", "train a normal-vs-abnormal (e.g. TB) chest X-ray classifier",
             "Train a classifier as the workflow's pretraining step does, with a patient-level "
             "validation split. Data: either class folders (--data DIR --classes "
             "normal=0,abnormal=1; folders may sit at any depth) or an NLM TB collection "
             "(--layout shenzhen DIR / --layout montgomery DIR; label from the file name).\n"
             "Writes OUTDIR/model.pt (use it with `cxrbs predict`), history and validation "
             "predictions.",
             cmd_train_cls)
    p.add_argument("--data", type=Path, default=None, metavar="DIR", help="folder of class folders")
    p.add_argument("--classes", default=None, metavar="NAME=LABEL,...",
                   help="class folder names and labels, e.g. normal=0,abnormal=1 or "
                        "NORMAL=0,PNEUMONIA=1")
    p.add_argument("--patient-regex", default=None, metavar="REGEX",
                   help="regex on the file name whose group 1 is the patient id, so follow-up "
                        "images of one patient stay on one side of the split (e.g. '^(\\d{8})_' "
                        "for ChestX-ray8); default: every image is its own patient")
    p.add_argument("--layout", choices=("shenzhen", "montgomery"), default=None,
                   help="NLM TB collection layout instead of class folders")
    p.add_argument("layout_dir", nargs="?", type=Path, metavar="DIR",
                   help="the TB collection's folder (with --layout)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", choices=CLS_MODELS, default="vgg16",
                   help="vgg16 as in the study; small_cnn trains from scratch much faster")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="model argument, repeatable, e.g. --model-arg widths=16,32,64,128")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE.pth",
                   help="torchvision VGG-16 ImageNet state dict (vgg16-397923af.pth) to start from")
    p.add_argument("--size", type=int, default=256, help="image side after preprocessing")
    p.add_argument("--epochs", type=int, default=32, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd",
                   help="sgd (momentum 0.9, Nesterov) as in the study, or adamw (more robust "
                        "from random weights)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of patients for validation")
    p.add_argument("--seed", type=int, default=13, help="seed of the split and training")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _add_predict(sub: Any) -> None:
    p = _sub(sub, "predict", "probability of the abnormal (e.g. TB) class per image",
             "Apply a classifier trained by `cxrbs train-cls` (or the workflow) to images. Each "
             "image is preprocessed at the size the model was trained at. Prints CSV (image, "
             "probability) or writes it with -o. For research only; not for diagnostic use.",
             cmd_predict)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders (searched recursively)")
    p.add_argument("--model", type=Path, required=True, metavar="model.pt",
                   help="classifier checkpoint")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="predictions.csv",
                   help="CSV to write (default: print to stdout)")
    p.add_argument("--size", type=int, default=None,
                   help="override the image side (default: the checkpoint's, else 256)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")


# ----------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status, argparse's exits included, never raises."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args))
    except CxrbsError as exc:
        _report(exc)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cxrbs: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cxrbs predict ... | head`: the reader left, not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
