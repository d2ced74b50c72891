"""``cxrbs train-bs``, ``evaluate-bs`` and ``suppress``: the bone-suppression stage by hand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cxrbs.commands.common import BS_ARCH_DEFAULTS, EXIT_USER_ERROR, prepare_sets, report
from cxrbs.commands import cli_checks as checks
from cxrbs.core.errors import CxrbsError


def train_bs(args: argparse.Namespace, *, progress: bool) -> int:
    """Prepare pairs like the workflow's data stage, then train; every option checked first."""
    import numpy as np

    from cxrbs.bs.pairs import prepare_pairs
    from cxrbs.bs.train import TrainConfig, train_bs as train

    kwargs = {**BS_ARCH_DEFAULTS.get(args.arch, {}), **checks.model_args(args.model_arg)}
    checks.check_train_bs(args, kwargs)
    cfg = TrainConfig.from_mapping({
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "crop_size": args.crop_size, "amp": args.amp, "seed": args.seed, "threads": args.threads,
        "device": args.device, "early_stopping_patience": args.patience,
    })
    out = Path(args.output)
    sets = prepare_sets(args.pairs_dirs, out / "data", layout="paired", size=args.size,
                        progress=progress)
    data = out / "data"
    counts = prepare_pairs([m for _, m, _ in sets], [s for _, _, s in sets],
                           train_out=data / "train.npy", val_out=data / "val.npy",
                           split_out=data / "split.csv", val_fraction=args.val_fraction,
                           n_pairs=args.n_pairs, seed=args.seed, progress=progress)
    summary = train(args.arch, kwargs, np.load(data / "train.npy", mmap_mode="r"),
                    np.load(data / "val.npy", mmap_mode="r"), cfg, out, progress=progress)
    print(f"trained {args.arch} on {counts['train']} augmented pairs from "
          f"{counts['train_originals']} originals ({counts['val']} validation): best val loss "
          f"{summary['best_val_loss']:.5f} at epoch {summary['best_epoch']} of "
          f"{summary['epochs_run']} ({summary['stop_reason']})")
    print(f"model: {out / 'best.pt'}")
    return 0


def evaluate_bs(args: argparse.Namespace, *, progress: bool) -> int:
    """Model and identity baseline scored on each PAIRS_DIR; prints the summary table."""
    import pandas as pd

    from cxrbs.bs.evaluate import evaluate_model_on_pairs, summarize_evaluations
    from cxrbs.bs.suppress import model_image_size, resolve_model
    from cxrbs.bs.predict import load_bs_model
    from cxrbs.core.atomic import write_csv

    checks.check_evaluate_bs(args)
    model_path = resolve_model(args.model)
    _, meta = load_bs_model(model_path)
    arch = str(meta.get("model_name") or "model")
    size = args.size or model_image_size(meta)
    out = Path(args.output)
    sets = prepare_sets(args.pairs_dirs, out / "data", layout="paired", size=size,
                        progress=progress)
    frames = []
    for name, manifest, stack in sets:
        for path, label in ((None, "identity"), (model_path, arch)):
            frames.append(evaluate_model_on_pairs(path, stack, manifest, arch=label, test_set=name,
                                                  batch_size=args.batch_size))
    per_image = pd.concat(frames, ignore_index=True)
    summary = summarize_evaluations(frames)
    write_csv(out / "per_image.csv", per_image)
    write_csv(out / "summary.csv", summary)
    print(summary_table(summary))
    print(f"\nper-image metrics: {out / 'per_image.csv'}\nsummary: {out / 'summary.csv'}")
    return 0


def summary_table(summary: Any) -> str:
    """Mean, SD and 95% CI per test set, metric and model: the identity row is the bar to beat."""
    rows = summary.sort_values(["test_set", "metric", "arch"], kind="stable")
    table = rows.assign(
        mean=rows["mean"].map(lambda v: f"{v:.4f}"),
        sd=rows["sd"].map(lambda v: f"{v:.4f}"),
        ci95=[f"[{lo:.4f}, {hi:.4f}]"
              for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)],
    )[["test_set", "metric", "arch", "mean", "sd", "ci95", "n"]]
    return str(table.to_string(index=False))


def suppress(args: argparse.Namespace, *, progress: bool) -> int:
    """Bone-suppress files and folders; a bad file is reported and skipped, the rest written."""
    from cxrbs.bs.suppress import resolve_model, suppress_files

    checks.check_suppress(args)
    from cxrbs.core.device import configure_threads

    configure_threads(getattr(args, "threads", None))
    model_path = resolve_model(args.model)
    failures: list[Path] = []

    def on_error(path: Path, exc: CxrbsError) -> None:
        report(exc)
        failures.append(path)

    output = Path(args.output)
    written = suppress_files(args.inputs, output, model_path, fmt=args.format,
                             full_resolution=not args.model_scale, size=args.size,
                             progress=progress, device=args.device, on_error=on_error,
                             exclude=[output], workers=getattr(args, "workers", None),
                             precision=getattr(args, "precision", "auto"))
    print(f"wrote {len(written)} bone-suppressed image(s) to {args.output}"
          + (f"; {len(failures)} input(s) failed (see above)" if failures else ""))
    return EXIT_USER_ERROR if failures else 0
