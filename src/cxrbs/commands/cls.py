"""``cxrbs train-cls`` and ``predict``: the classifier stage by hand."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cxrbs.commands.common import EXIT_USER_ERROR, prepare_sets, report
from cxrbs.commands import cli_checks as checks
from cxrbs.core.errors import CxrbsError
from cxrbs.core.progress import progress_iter

log = logging.getLogger("cxrbs")

#: Name of the class whose probability `predict` reports, when the checkpoint names none.
DEFAULT_POSITIVE_CLASS = "abnormal"


def train_cls(args: argparse.Namespace, *, progress: bool) -> int:
    """Pretraining as the workflow does it: label-stratified patient split, then training."""
    import numpy as np

    from cxrbs.cls.train import ClsTrainConfig, train_classifier
    from cxrbs.data.splits import patient_split
    from cxrbs.data.stacks import load_stack, read_manifest

    folder, layout, options = cls_source(args)
    kwargs = checks.model_args(args.model_arg)
    checks.check_train_cls(args, kwargs)
    train_cfg = {"epochs": args.epochs, "lr": args.lr, "optimizer": args.optimizer,
                 "batch_size": args.batch_size, "val_fraction": args.val_fraction,
                 "device": args.device}
    if args.patience is not None:
        train_cfg["early_stopping_patience"] = args.patience
    cfg = ClsTrainConfig.from_dict(train_cfg, seed=args.seed, threads=args.threads)
    out = Path(args.output)
    [(name, manifest_path, stack_path)] = prepare_sets([folder], out / "data", layout=layout,
                                                       size=args.size, progress=progress,
                                                       **options)
    # As the workflow's pretraining (cxrbs.cls.pipeline.pretrain): label-stratified patient split.
    frame = read_manifest(manifest_path)
    labels = frame["label"].astype(int).to_numpy()
    patients = (name + ":" + frame["patient_id"].astype(str)).to_numpy()
    is_val = patient_split(patients, val_fraction=cfg.val_fraction, seed=cfg.seed, labels=labels)
    summary = train_classifier(args.model, kwargs,
                               np.asarray(load_stack(stack_path)[:, :1]), labels, patients, cfg,
                               out, torchvision_weights=args.weights, val_mask=is_val,
                               progress=progress)
    auc = summary.get("best_val_auc")
    print(f"trained {args.model} on {summary['n_train']} image(s) ({summary['n_train_patients']} "
          f"patients), validated on {summary['n_val']}: best epoch {summary['best_epoch']}, "
          f"val AUC {'n/a' if auc is None else f'{auc:.3f}'}\nmodel: {out / 'model.pt'}")
    return 0


def parse_classes(text: str) -> dict[str, int]:
    """``normal=0,abnormal=1`` -> {"normal": 0, "abnormal": 1}; both labels must appear."""
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


def cls_source(args: argparse.Namespace) -> tuple[Path, str, dict[str, Any]]:
    """(folder, manifest layout, layout options) from --data/--classes or --layout DIR."""
    if (args.data is None) == (args.layout is None):
        raise CxrbsError("train-cls needs either --data DIR --classes normal=0,abnormal=1 (class "
                         "folders) or --layout shenzhen|montgomery DIR")
    if args.layout is not None:
        if args.layout_dir is None:
            raise CxrbsError(f"--layout {args.layout} needs the collection's folder, e.g. "
                             f"cxrbs train-cls --layout {args.layout} path/to/images -o OUTDIR")
        checks.check_inputs("DIR", [args.layout_dir], folders=True, what="the collection's images")
        return Path(args.layout_dir), args.layout, {}
    if not args.classes:
        raise CxrbsError("--data needs --classes, e.g. --classes normal=0,abnormal=1")
    checks.check_inputs("--data", [args.data], folders=True, what="the class folders")
    options: dict[str, Any] = {"classes": parse_classes(args.classes)}
    checks.check_regex("--patient-regex", args.patient_regex)
    if args.patient_regex:
        options["patient_regex"] = args.patient_regex
    return Path(args.data), "class_folders", options


def positive_class(meta: dict[str, Any]) -> str:
    """The class `predict` reports: the checkpoint's name for label 1 if it has one."""
    for key in ("positive_class", "class_names", "classes"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return str(value[1])
        if isinstance(value, dict):
            names = [str(k) for k, v in value.items() if v == 1]
            if len(names) == 1:
                return names[0]
    return DEFAULT_POSITIVE_CLASS


def predict(args: argparse.Namespace, *, progress: bool) -> int:
    """One probability per image, column ``p_<positive class>``; bad files reported, skipped.

    Images go through ``cxrbs.cls.predict``, the workflow's own preprocessing route, so a file
    scored here gets exactly the probability the workflow gives it.
    """
    from cxrbs.bs.suppress import iter_inputs
    from cxrbs.cls.predict import predict_files
    from cxrbs.cls.train import load_classifier
    from cxrbs.core.atomic import write_csv

    checks.check_predict(args)
    model, meta = load_classifier(Path(args.model))
    column = "p_" + positive_class(meta)
    files = list(iter_inputs(args.inputs))
    if not files:
        raise CxrbsError("no input images found (PNG, JPEG, TIFF or DICOM)")
    failed: list[Path] = []

    def skip(path: Path, exc: CxrbsError) -> None:
        report(exc)
        failed.append(path)

    frame = predict_files(model, meta, progress_iter(files, desc="predict", bar=progress,
                                                     unit="image"),
                          batch_size=args.batch_size, size=args.size, on_error=skip)
    frame = frame.rename(columns={"probability": column})
    if args.output:
        write_csv(args.output, frame)
        print(f"wrote {len(frame)} prediction(s) to {args.output}")
    else:
        sys.stdout.write(frame.to_csv(index=False))
    return EXIT_USER_ERROR if failed else 0

