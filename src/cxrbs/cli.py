"""The ``cxrbs`` console script: the workflow's steps, one at a time, on your own folders and files.

This module only parses: each subcommand is one function in ``cxrbs.commands`` that first has
``cxrbs.commands.cli_checks`` check every option (so nothing is read or written for a bad one), then
calls the same package functions as the Snakemake workflow, so a model trained here is
interchangeable with one trained there. Problems a user can fix print one line
``cxrbs: error: ...`` naming the flag or file and exit with status 2; heavy imports (torch)
happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxrbs import __version__
from cxrbs.commands import bs as bs_commands
from cxrbs.commands import cls as cls_commands
from cxrbs.commands import info as info_commands
from cxrbs.commands.common import EXIT_USER_ERROR, report
from cxrbs.core import names
from cxrbs.core.errors import CxrbsError
from cxrbs.core.signals import install_sigterm_handler, interrupted_exit

log = logging.getLogger("cxrbs")

PHANTOM_KINDS = names.PHANTOM_KINDS
BS_ARCHS = names.BS_ARCHITECTURES
CLS_MODELS = names.CLS_MODELS

_handler: logging.Handler | None = None


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
    """Progress bars only for a person watching; logs and pipes get periodic lines instead."""
    return not args.quiet and sys.stderr.isatty()


# ----------------------------------------------------------------------------- subcommands
# One line each, so `cxrbs.cli` stays a table of what exists; the work is in cxrbs.commands.


def cmd_info(args: argparse.Namespace) -> int:
    return info_commands.info(args)


def cmd_phantoms(args: argparse.Namespace) -> int:
    return info_commands.phantoms(args)


def cmd_train_bs(args: argparse.Namespace) -> int:
    return bs_commands.train_bs(args, progress=_progress(args))


def cmd_evaluate_bs(args: argparse.Namespace) -> int:
    return bs_commands.evaluate_bs(args, progress=_progress(args))


def cmd_suppress(args: argparse.Namespace) -> int:
    return bs_commands.suppress(args, progress=_progress(args))


def cmd_train_cls(args: argparse.Namespace) -> int:
    return cls_commands.train_cls(args, progress=_progress(args))


def cmd_models(args: argparse.Namespace) -> int:
    return info_commands.models(args)


def cmd_predict(args: argparse.Namespace) -> int:
    return cls_commands.predict(args, progress=_progress(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    return info_commands.check_config_files(args)


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
    _add_models(sub)
    _add_train_cls(sub)
    _add_predict(sub)
    _add_check_config(sub)
    return parser


def _sub(sub: Any, name: str, help_: str, description: str, func: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description, formatter_class=_Formatter)
    _common(p)
    p.set_defaults(func=func)
    return p


def _add_info(sub: Any) -> None:
    p = _sub(sub, "info", "describe chest X-ray files (DICOM, PNG, JPEG, TIFF)",
             "Print what cxrbs reads from each file: modality, size, bit depth, photometric "
             "interpretation, stored value range (the raw stored values: for MONOCHROME1, where "
             "high values are dark, cxrbs inverts the pixels when it reads them for training or "
             "suppression, but info shows them as stored) and DICOM transfer syntax. Useful to check an export before training or suppression.",
             cmd_info)
    p.add_argument("files", nargs="+", metavar="FILE", help="image files")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text blocks")


def _add_models(sub: Any) -> None:
    p = _sub(sub, "models", "list the bone-suppression models bundled with cxrbs",
             "The trained bone-suppression models shipped inside the package, with the headline "
             "figures of their model cards (held-out gains over the identity baseline). Use one "
             "with `cxrbs suppress --model NAME`; without --model, suppress uses the default one "
             "when no workflow result is present.",
             cmd_models)
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text blocks")


def _add_phantoms(sub: Any) -> None:
    p = _sub(sub, "phantoms", "write synthetic chest radiographs in a real data set's layout",
             "Synthetic PA chest radiographs (soft tissue + bone shadows + noise) written in the "
             "folder layout of a public data set, to try the tools without real data.\n"
             "  pairs       BSE-JSRT-style source/ and target/ (bone-suppressed) pairs\n"
             "  des         dual-energy-style pairs from 'another institution'\n"
             "  scanner2    pairs from 'another scanner' (noise, contrast, size), bones removed\n"
             "  shenzhen    CHNCXR_####_L.png, L = 1 for TB\n"
             "  montgomery  MCUCXR_####_L.png\n"
             "  cxr8        normal/ and abnormal/ folders, PPPPPPPP_FFF.png (patient, follow-up)",
             cmd_phantoms)
    p.add_argument("outdir", metavar="OUTDIR", help="folder to write into (created if needed)")
    p.add_argument("--n", type=int, required=True, help="number of images (pairs for pairs/des/scanner2)")
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
    p.add_argument("--amp", choices=names.AMP_MODES, default="none",
                   help="mixed precision (bf16 is faster on recent CPUs and GPUs)")
    p.add_argument("--seed", type=int, default=13,
                   help="seed of the split, augmentation and training")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: the CPUs this process may use)")
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
             "--model-scale instead returns the model's raw output as in the study: a square image at "
             "the model's size (e.g. 256x256; a non-square input is squashed, not cropped), in "
             "the contrast-stretched intensities the model works in (1st-99th percentile of the "
             "input mapped to 0..1, clipped), saved as 8-bit PNG. It is not on the input's "
             "intensity scale, so compare it only with targets preprocessed the same way.\n"
             "Outputs are named NAME_bs.png (16-bit at full resolution) or NAME_bs.dcm: a new "
             "DICOM series (ImageType DERIVED) in the original patient's study.\n"
             "For research only; not for diagnostic use.",
             cmd_suppress)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", type=Path, default=None, metavar="CKPT|NAME",
                   help="checkpoint (best.pt) or a bundled model's name (`cxrbs models`); "
                        "default: the workflow's choice in results/bs/best.json when run from "
                        "the workflow folder, else the default bundled model")
    p.add_argument("--format", choices=names.OUTPUT_FORMATS, default="png",
                   help="output format; dicom needs DICOM inputs (their tags are copied)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: the CPUs this process may use: its "
                        "affinity mask and cgroup quota, not the host's core count)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="images processed at once, each on its own thread with its share of "
                        "--threads (default: one per thread, at most one per file); results "
                        "are the same for any N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network arithmetic: auto = bf16 where the CPU/GPU computes it natively "
                        "(about 2x faster; under one 8-bit grey level from fp32 on real "
                        "radiographs, see the README), else fp32; fp32 = the reference path")
    p.add_argument("--model-scale", action="store_true",
                   help="the study's output: square at the model's size, contrast-stretched (1st-99th "
                        "percentile), 8-bit; see above")
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
    p.add_argument("--layout", choices=names.TB_LAYOUTS, default=None,
                   help="NLM TB collection layout instead of class folders")
    p.add_argument("layout_dir", nargs="?", type=Path, metavar="DIR",
                   help="the TB collection's folder (with --layout)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", choices=CLS_MODELS, default="vgg16",
                   help="vgg16 as in the study; resnet18 (or small_cnn) trains from scratch much "
                        "faster (README, Classifier without ImageNet weights)")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                   help="model argument, repeatable, e.g. --model-arg widths=16,32,64,128")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE.pth",
                   help="torchvision VGG-16 ImageNet state dict (vgg16-397923af.pth) to start from")
    p.add_argument("--size", type=int, default=256, help="image side after preprocessing")
    p.add_argument("--epochs", type=int, default=32, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--optimizer", choices=names.OPTIMIZERS, default="sgd",
                   help="sgd (momentum 0.9, Nesterov) as in the study, or adamw (more robust "
                        "from random weights)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of patients for validation")
    p.add_argument("--seed", type=int, default=13, help="seed of the split and training")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: the CPUs this process may use)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _add_predict(sub: Any) -> None:
    p = _sub(sub, "predict", "probability of the abnormal (e.g. TB) class per image",
             "Apply a classifier trained by `cxrbs train-cls` (or the workflow) to images. Each "
             "image is preprocessed at the size the model was trained at. Prints CSV (image, "
             "p_abnormal: the probability of the positive class, named from the checkpoint when "
             "it records one) or writes it with -o (never over an input). Without a terminal, "
             "progress is logged every few batches. For research only; not for diagnostic use.",
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


def _add_check_config(sub: Any) -> None:
    p = _sub(sub, "check-config", "check a workflow config file before snakemake reads it",
             "Parse a config file as Snakemake does (JSON, then YAML) and check it against the "
             "workflow's schema and its deeper checks. Every problem is one line on stderr, "
             "FILE:LINE:COL: problem (a YAML syntax error where the parser stopped; a bad key at "
             "the line it is written on), and the exit status is 2. Snakemake itself says only "
             "\"Config file is not valid JSON or YAML\" for a syntax error; `make demo` and "
             "`make dryrun` run this check first.",
             cmd_check_config)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="config files (YAML or JSON)")
    p.add_argument("--schema-only", action="store_true",
                   help="skip the checks beyond the schema (model arguments, patient regexes), "
                        "which import torch")


# ----------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status, argparse's exits included, never raises."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    _configure_logging(args.verbose, args.quiet)
    previous = signal.getsignal(signal.SIGTERM)
    installed = install_sigterm_handler()  # SIGTERM (a cluster's kill) ends like Ctrl-C
    try:
        return int(args.func(args))
    except CxrbsError as exc:
        report(exc)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:  # Ctrl-C: 130; SIGTERM: 143, one line each
        return interrupted_exit(exc)
    except BrokenPipeError:  # `cxrbs predict ... | head`: the reader left, not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if installed:  # main() called as a library function leaves the process as it found it
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
