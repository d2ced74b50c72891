"""From-scratch classifier search on ChestX-ray8 (issue 14): candidates on the pipeline's own
pretraining split, scored on validation only, with the HOG floor on the same split.

Each candidate runs exactly the workflow's pretraining stage (``cxrbs.cls.pipeline.pretrain``: same
manifest, 256² stack, percentiles, patient-level split with ``cls.pretrain.val_fraction`` and the
config seed), so a chosen recipe behaves in ``snakemake`` as it did here. Per candidate it prints
validation AUC with a patient-level bootstrap CI, the same with horizontal-flip test-time
augmentation (scored after training, never used to stop or select epochs), the HOG floor, wall
minutes, parameters and training images/s; rows are appended to ``OUT/search.csv``.

Run (one candidate per process; two can share a 2-core machine with --threads 1):
    .venv/bin/python benchmarks/cls_pretrain_search.py --candidates benchmarks/cls_pretrain_candidates.yaml \\
        --only resnet18_adamw_128 --threads 1 --out ../cls_search
Plot the table (validation AUC with CIs beside the HOG floor, and validation AUC against
training minutes per candidate):
    .venv/bin/python benchmarks/cls_pretrain_search.py --out ../cls_search --plot docs/cls_search.png
Score the workflow's own pretraining run the same way (deep model and HOG floor rows):
    .venv/bin/python benchmarks/cls_pretrain_search.py --score results/cls/pretrain/predictions.csv
Nothing here is a test set: the ChestX-ray8 validation split only ranks candidates.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from cxrbs.cls.metrics import metrics_with_ci
from cxrbs.cls.pipeline import load_labelled_sets, pretrain
from cxrbs.cls.predict import fold_images, predict_images
from cxrbs.cls.train import load_classifier
from cxrbs.core.device import configure_threads
from cxrbs.data.manifests import build_manifest
from cxrbs.data.stacks import build_stack

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cxr8"
PATIENT_REGEX = r"^(\d{8})_\d{3}$"


def prepare(data: Path, out: Path, size: int) -> tuple[Path, Path]:
    """Manifest and 256² stack as the workflow's data stage writes them (cached in ``out``)."""
    man, stk = out / "data" / "cxr8" / "manifest.csv", out / "data" / "cxr8" / "images.npy"
    if not stk.is_file():
        frame = build_manifest(data, "class_folders", classes={"normal": 0, "pneumonia": 1},
                               patient_regex=PATIENT_REGEX)
        man.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(man, index=False)
        build_stack(frame, stk, size=size)
    return man, stk


def flip_tta(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """P(class 1) with the package's flip TTA (``tta_hflip``: logits of image and mirror averaged)."""
    before = getattr(model, "tta_hflip", False)
    model.tta_hflip = True
    try:
        return predict_images(model, images)
    finally:
        model.tta_hflip = before


def auc_ci(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, seed: int) -> tuple[float, float, float]:
    table = metrics_with_ci(y, prob, groups, n_boot=1000, seed=seed).set_index("metric")
    row = table.loc["auc"]
    return float(row["value"]), float(row["ci_low"]), float(row["ci_high"])


def run_candidate(name: str, spec: dict[str, Any], common: dict[str, Any], man: Path, stk: Path,
                  out: Path, threads: int | None) -> dict[str, Any]:
    seed = int(common.get("seed", 13))
    train = {**common.get("train", {}), **spec.get("train", {})}
    input_size = int(spec.get("input_size", 128))
    outdir = out / "runs" / name
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    preds = pretrain([man], [stk], model=spec["model"], model_kwargs=spec.get("model_kwargs", {}),
                     train_cfg=train, seed=seed, outdir=outdir, weights=None, threads=threads,
                     hog_floor=True, input_size=input_size)
    minutes = (time.perf_counter() - t0) / 60
    cpu_minutes = (time.process_time() - cpu0) / 60
    deep = preds[preds["model"] == "deep"]
    floor = preds[preds["model"] == "hog_floor"]
    y = deep["label"].to_numpy()
    groups = deep["patient"].to_numpy()
    auc, lo, hi = auc_ci(y, deep["probability"].to_numpy(), groups, seed)
    f_auc, f_lo, f_hi = auc_ci(floor["label"].to_numpy(), floor["probability"].to_numpy(),
                               floor["patient"].to_numpy(), seed)
    # TTA on the same validation images, in the same order as predictions.csv: the split is the
    # one the training run wrote (split.csv), not recomputed here.
    images, frame = load_labelled_sets([man], [stk])
    labels = frame["label"].astype(int).to_numpy()
    is_val = pd.read_csv(outdir / "split.csv")["split"].eq("val").to_numpy()
    model, meta = load_classifier(outdir / "model.pt")
    val_images = fold_images(images, input_size)[is_val]
    t_auc, t_lo, t_hi = auc_ci(labels[is_val], flip_tta(model, val_images), groups, seed)
    history = pd.read_csv(outdir / "history.csv")
    summary = json.loads((outdir / "train_summary.json").read_text())
    return {
        "candidate": name, "model": spec["model"], "input_size": input_size,
        "params": sum(p.numel() for p in model.parameters()),
        "val_auc": auc, "val_auc_low": lo, "val_auc_high": hi,
        "tta_val_auc": t_auc, "tta_low": t_lo, "tta_high": t_hi,
        "hog_auc": f_auc, "hog_low": f_lo, "hog_high": f_hi,
        "margin_over_hog": auc - f_auc, "n_val": int(is_val.sum()),
        "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
        "wall_minutes": minutes, "cpu_minutes": cpu_minutes, "threads": threads or torch.get_num_threads(),
        "train_images_per_s": float(history["images_per_s"].median()),
        "train": json.dumps(train, sort_keys=True),
    }  # fmt: skip


def score(predictions: Path, seed: int) -> None:
    """Validation AUC + CI of a pretraining predictions.csv, deep model beside the HOG floor."""
    preds = pd.read_csv(predictions, dtype={"patient": str})
    rows = {}
    for model in ("deep", "hog_floor"):
        part = preds[(preds["dataset"] == "pretrain") & (preds["model"] == model)]
        if part.empty:
            raise SystemExit(f"{predictions} has no pretrain rows of model {model!r}")
        rows[model] = auc_ci(part["label"].to_numpy(), part["probability"].to_numpy(),
                             part["patient"].to_numpy(), seed)
    (auc, lo, hi), (f_auc, f_lo, f_hi) = rows["deep"], rows["hog_floor"]
    print(f"{predictions}: val AUC {auc:.3f} [{lo:.3f}, {hi:.3f}], HOG floor {f_auc:.3f} "
          f"[{f_lo:.3f}, {f_hi:.3f}], margin {auc - f_auc:+.3f}")


def plot(out: Path, png: Path) -> None:
    """Forest plot of the candidates' validation AUCs and their learning curves over wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.read_csv(out / "search.csv").drop_duplicates("candidate", keep="last")
    table = table.sort_values("val_auc").reset_index(drop=True)
    fig, (ax, curves) = plt.subplots(1, 2, figsize=(12, 0.45 * len(table) + 2.5),
                                     gridspec_kw={"width_ratios": [1.1, 1]})
    pos = np.arange(len(table))
    err = [table["val_auc"] - table["val_auc_low"], table["val_auc_high"] - table["val_auc"]]
    ax.errorbar(table["val_auc"], pos, xerr=err, fmt="o", color="C0", capsize=3,
                label="validation AUC, 95% patient-level bootstrap CI")
    floor = float(table["hog_auc"].iloc[0])
    ax.axvline(floor, color="grey", ls="--", label=f"HOG floor {floor:.3f}")
    ax.axvline(0.92, color="C3", ls=":", label="target 0.92")
    labels = [f"{r.candidate} ({r.wall_minutes:.0f} min, {r.threads} thr)" for r in table.itertuples()]
    ax.set_yticks(pos, labels, fontsize=8)
    ax.set_xlabel("ChestX-ray8 validation AUC (normal vs pneumonia)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    for r in table.itertuples():
        history = pd.read_csv(out / "runs" / r.candidate / "history.csv")
        curves.plot(history["seconds"].cumsum() / 60, history["val_auc"], label=r.candidate, lw=1)
    curves.axhline(floor, color="grey", ls="--")
    curves.set_xlabel("training minutes")
    curves.set_ylabel("validation AUC after each epoch")
    curves.legend(fontsize=7)
    fig.suptitle("From-scratch classifier search on the pretraining split (chosen on validation only)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=Path, default=Path(__file__).with_name("cls_pretrain_candidates.yaml"))
    ap.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path("../cls_search"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--score", type=Path, default=None, metavar="PREDICTIONS.csv",
                    help="only score an existing pretraining predictions.csv")
    ap.add_argument("--seed", type=int, default=13, help="bootstrap seed of --score")
    ap.add_argument("--plot", type=Path, default=None, metavar="PNG",
                    help="only plot OUT/search.csv and the runs' histories")
    args = ap.parse_args()
    if args.plot is not None:
        plot(args.out, args.plot)
        return
    if args.score is not None:
        score(args.score, args.seed)
        return
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/data/cxr8")
    doc = yaml.safe_load(args.candidates.read_text())
    common, cands = doc.get("common", {}), doc["candidates"]
    names = args.only or list(cands)
    unknown = sorted(set(names) - set(cands))
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}: choose from {sorted(cands)}")
    configure_threads(args.threads)
    man, stk = prepare(args.data, args.out, int(common.get("image_size", 256)))
    for name in names:
        row = run_candidate(name, cands[name], common, man, stk, args.out, args.threads)
        path = args.out / "search.csv"
        pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)
        print(f"{name}: val AUC {row['val_auc']:.3f} [{row['val_auc_low']:.3f}, {row['val_auc_high']:.3f}]"
              f" (flip TTA {row['tta_val_auc']:.3f}), HOG floor {row['hog_auc']:.3f}, "
              f"{row['wall_minutes']:.1f} min on {row['threads']} thread(s), "
              f"{row['train_images_per_s']:.0f} img/s, {row['params']:,} params", flush=True)


if __name__ == "__main__":
    main()
