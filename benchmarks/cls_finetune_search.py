"""Fine-tuning recipe search on the TB collections' *training* folds only (issue 26, item 3).

Why: the workflow's TB classifier (``config/tb_cpu.yaml``) scores below its own HOG floor. Which
fine-tuning recipe does better must be decided without the test folds the study reports on. So for
each chosen outer fold k this takes only the images *outside* fold k, splits them again by patient
into 4 inner folds (stratified, seeded), and runs exactly the workflow's fine-tuning stage
(``cxrbs.cls.pipeline.finetune_fold``: same pretrained checkpoint, same checkpoint choice on its own
inner-validation part) with inner fold 0 as the scored validation set. Outer fold k's images are
never loaded into a model. Per candidate it prints the validation AUC pooled over the outer folds
with a patient-level bootstrap CI, the same with flip test-time augmentation (scored after
training, never used to stop or choose), the HOG floor on the same images, and the paired
difference from the reference candidate (the first listed).

Run on a finished workflow folder (``results/data/<set>`` and ``results/cls/pretrain/model.pt``),
one thread, rows appended to ``OUT/search.csv`` as each run finishes:
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/cls_finetune_search.py \\
        --workdir /work/tbrun --candidates benchmarks/cls_finetune_candidates.yaml \\
        --dataset shenzhen --outer 0 1 --threads 1 --out ../cls_ft_search
Summarise what has finished (no training):
    .venv/bin/python benchmarks/cls_finetune_search.py --out ../cls_ft_search --summary
Nothing here is a test set: the scored images are validation images inside the outer training part.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from cxrbs.cls.metrics import metrics_with_ci
from cxrbs.cls.pipeline import finetune_fold
from cxrbs.cls.lung_crop import DEFAULT_MARGIN, set_crop
from cxrbs.cls.predict import fold_images, predict_images
from cxrbs.cls.train import load_classifier
from cxrbs.core.device import configure_threads
from cxrbs.core.layout import Layout
from cxrbs.data.splits import patient_kfold
from cxrbs.data.stacks import load_stack

INNER_K = 4


def inner_split(layout: Layout, dataset: str, variant: str, outer: int, seed: int,
                out: Path) -> tuple[Path, Path]:
    """Stack and folds table of outer fold ``outer``'s training part, re-split into inner folds."""
    folds = pd.read_csv(layout.folds(dataset), dtype={"patient_id": str})
    keep = folds["fold"].to_numpy() != outer
    part = folds[keep].reset_index(drop=True)
    part["fold"] = patient_kfold(part["patient_id"].to_numpy(), part["label"].to_numpy(),
                                 k=INNER_K, seed=seed + 1000 + outer)
    where = out / "splits" / f"{dataset}_{variant}_outer{outer}"
    where.mkdir(parents=True, exist_ok=True)
    stk, tab = where / "images.npy", where / "folds.csv"
    if not stk.is_file():
        stack = load_stack(layout.variant_stack(dataset, variant))
        np.save(stk, np.ascontiguousarray(stack[keep]))
    part.to_csv(tab, index=False)
    return stk, tab


def auc_ci(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, seed: int,
           n_boot: int = 1000) -> tuple[float, float, float]:
    row = metrics_with_ci(y, prob, groups, n_boot=n_boot, seed=seed).set_index("metric").loc["auc"]
    return float(row["value"]), float(row["ci_low"]), float(row["ci_high"])


def run(name: str, spec: dict[str, Any], common: dict[str, Any], layout: Layout, dataset: str,
        variant: str, outer: int, threads: int | None, out: Path,
        lung_masks: Path | None = None) -> pd.DataFrame:
    """One candidate on one outer fold's inner split; returns its validation predictions."""
    seed = int(common.get("seed", 13))
    stk, tab = inner_split(layout, dataset, variant, outer, seed, out)
    train = {**common.get("finetune", {}), **spec.get("finetune", {})}
    input_size = int(spec.get("input_size", common.get("input_size", 128)))
    crop = spec.get("lung_crop", common.get("lung_crop"))
    if crop is not None:
        crop = {"margin": DEFAULT_MARGIN, **crop, "mask_dir": lung_masks}
    outdir = out / "runs" / f"{name}_{dataset}_{variant}_outer{outer}"
    t0 = time.perf_counter()
    preds = finetune_fold(stk, tab, dataset=dataset, variant=variant, fold=0,
                          init_checkpoint=layout.cls_pretrain_model, train_cfg=train, seed=seed,
                          outdir=outdir, threads=threads, hog_floor=True, input_size=input_size,
                          lung_crop=crop)
    minutes = (time.perf_counter() - t0) / 60
    # flip TTA on the same validation images, in predictions.csv's order (the folds table's rows)
    model, _ = load_classifier(outdir / "model.pt")
    table = pd.read_csv(tab)
    is_val = table["fold"].to_numpy() == 0
    found = set_crop(crop, [Path(str(p)).stem for p in table["image_path"]])
    boxes = None if found is None else found.boxes
    images = fold_images(load_stack(stk), input_size, boxes)[is_val]
    model.tta_hflip = True
    tta = preds[preds["model"] == "deep"].copy()
    tta["model"] = "deep_tta"
    tta["probability"] = predict_images(model, images)
    preds = pd.concat([preds, tta], ignore_index=True)
    summary = json.loads((outdir / "train_summary.json").read_text())
    preds["candidate"], preds["outer"], preds["minutes"] = name, outer, minutes
    preds["epochs_run"], preds["best_epoch"] = summary["epochs_run"], summary["best_epoch"]
    preds["input_size"], preds["train"] = input_size, json.dumps(train, sort_keys=True)
    preds["lung_crop"] = json.dumps(crop and {"margin": crop["margin"]})
    return preds


def _paired_diff(a: pd.DataFrame, b: pd.DataFrame, seed: int, n_boot: int = 2000) -> tuple[float, float, float]:
    """AUC(a) − AUC(b) on the same images, image-level bootstrap (percentile CI)."""
    m = a.merge(b, on=["outer", "image"], suffixes=("_a", "_b"))
    y = m["label_a"].to_numpy()
    pa, pb = m["probability_a"].to_numpy(), m["probability_b"].to_numpy()
    d0 = roc_auc_score(y, pa) - roc_auc_score(y, pb)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        diffs.append(roc_auc_score(y[i], pa[i]) - roc_auc_score(y[i], pb[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(d0), float(lo), float(hi)


def summary(out: Path, seed: int = 13, n_boot: int = 1000) -> pd.DataFrame:
    """Pooled validation AUC per candidate and model (deep, deep_tta, hog_floor), with CIs."""
    table = out / "search.csv"
    if not table.is_file():
        raise SystemExit(f"{table} does not exist yet: run a candidate first")
    preds = pd.read_csv(table, dtype={"patient": str})
    order = list(dict.fromkeys(preds["candidate"]))
    ref = preds[(preds["candidate"] == order[0]) & (preds["model"] == "deep")]
    rows = []
    for cand in order:
        for model in ("deep", "deep_tta", "hog_floor"):
            p = preds[(preds["candidate"] == cand) & (preds["model"] == model)]
            auc, lo, hi = auc_ci(p["label"].to_numpy(), p["probability"].to_numpy(),
                                 p["patient"].to_numpy(), seed, n_boot)
            d, dlo, dhi = _paired_diff(p, ref[ref["outer"].isin(p["outer"].unique())], seed,
                                       2 * n_boot)
            rows.append({"candidate": cand, "model": model, "outer_folds": p["outer"].nunique(),
                         "n_val": len(p), "val_auc": auc, "ci_low": lo, "ci_high": hi,
                         f"minus_{order[0]}": d, "diff_low": dlo, "diff_high": dhi,
                         "minutes_per_fold": p.groupby("outer")["minutes"].first().mean()})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="a finished workflow folder (holds results/)")
    ap.add_argument("--candidates", type=Path)
    ap.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    ap.add_argument("--dataset", default="shenzhen")
    ap.add_argument("--variant", default="baseline")
    ap.add_argument("--outer", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--lung-masks", type=Path, default=None,
                    help="mask folder for candidates with lung_crop (datasets.<tb>.lung_masks)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summary", action="store_true", help="print the table of finished runs only")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the CIs")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        if args.workdir is None or args.candidates is None:
            raise SystemExit("--workdir and --candidates are needed to run candidates")
        configure_threads(args.threads)
        spec = yaml.safe_load(args.candidates.read_text())
        common, cands = spec.get("common", {}), spec["candidates"]
        layout = Layout(args.workdir / "results")
        names = args.only or list(cands)
        for outer in args.outer:
            for name in names:
                preds = run(name, cands[name], common, layout, args.dataset, args.variant, outer,
                            args.threads, args.out, args.lung_masks)
                table = args.out / "search.csv"
                preds.to_csv(table, mode="a", header=not table.is_file(), index=False)
                deep = preds[preds["model"] == "deep"]
                auc = roc_auc_score(deep["label"], deep["probability"])
                print(f"{name} outer {outer}: val AUC {auc:.3f} in {deep['minutes'].iloc[0]:.1f} min",
                      flush=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary(args.out, n_boot=args.n_boot).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
