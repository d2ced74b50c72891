#!/usr/bin/env python
"""The bone-suppression recipe search table (issue 20): validation numbers only, one row per run.

    .venv/bin/python benchmarks/bs_search.py RUN_DIR [RUN_DIR ...] [--bundled cxrbs-bs-unet16-v1]
                                             [--data ../shared/data] [--flip] [--test]

A RUN_DIR is the working folder of one workflow run of a candidate config (``snakemake
--directory RUN_DIR --configfile RUN_DIR/config.yaml -- results/bs/eval/summary.csv``): every
candidate is trained by the workflow, nothing here trains. For each run's selected checkpoint
(and each ``--bundled`` model) this scores the full-resolution path, exactly as the workflow's
``evaluate_bs_fullres`` does (:func:`cxrbs.bs.fullres.evaluate_fullres`), on

* the BSE-JSRT validation patients of the run's split (within the institution), and
* the SZCH dual-energy pairs (across institutions),

the two validation sets declared in ``config/bundled.yaml``; ``--flip`` adds a row with left-right
flip test-time averaging. The BSE-JSRT test patients are scored only with ``--test``, for the
one model finally chosen. CPU minutes come from the run's Snakemake benchmark file of train_bs
(``cpu_time``), which is not shortened or lengthened much by a busy second core.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
import torch

from cxrbs.bs.fullres import evaluate_fullres
from cxrbs.bs.paired_stats import paired_difference_test


def _files(data: Path, split_csv: Path, part: str) -> list[tuple[str, Path, Path]]:
    split = pd.read_csv(split_csv, dtype={"pair_id": str, "patient_id": str})
    ids = split["pair_id"] if "pair_id" in split else split["patient_id"]
    return [(i, data / "bse-jsrt" / "source" / f"{i}.png", data / "bse-jsrt" / "target" / f"{i}.png")
            for i in ids[split["split"] == part]]


def _szch(data: Path) -> list[tuple[str, Path, Path]]:
    return [(p.stem, p, data / "des-szch" / "target" / p.name)
            for p in sorted((data / "des-szch" / "source").glob("*.png"))]


def _gain(model: pd.DataFrame, ident: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """Mean gain, its 95% bootstrap CI (nan for n < 3) and the smallest per-image gain."""
    a = model.set_index("name")[metric]
    b = ident.set_index("name")[metric].loc[a.index]
    res = paired_difference_test(a.to_numpy(), b.to_numpy(), n_boot=2000, seed=2026)
    return res["difference"], res["ci_low"], float((a - b).min())


def score(label: str, ckpt: Path | None, split_csv: Path, data: Path, flip: bool, test: bool,
          identity: dict[str, pd.DataFrame], info: dict[str, object]) -> dict[str, object]:
    sets = {"validation": _files(data, split_csv, "val"), "szch": _szch(data)}
    if test:
        sets["heldout_test"] = _files(data, split_csv, "test")
    row: dict[str, object] = {"run": label + (" + flip TTA" if flip else ""), **info}
    for name, files in sets.items():
        key = f"{split_csv}:{name}"
        if key not in identity:
            identity[key] = evaluate_fullres(None, files, arch="identity", test_set=name,
                                             progress=False)
        frame = evaluate_fullres(ckpt, files, arch=label, test_set=name, flip_tta=flip,
                                 progress=False)
        g, lo, worst = _gain(frame, identity[key], "psnr")
        m, _, mworst = _gain(frame, identity[key], "ms_ssim")
        row[f"{name} PSNR gain"] = round(g, 3)
        row[f"{name} PSNR CI low"] = round(lo, 3)
        row[f"{name} worst pair"] = round(worst, 3)
        row[f"{name} MS-SSIM gain"] = round(m, 5)
    return row


def _run_info(run: Path) -> tuple[Path, Path, dict[str, object]]:
    best = json.loads((run / "results/bs/best.json").read_text(encoding="utf-8"))
    arch = best["arch"]
    ckpt = run / "results/bs/models" / arch / "best.pt"
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)
    params = sum(v.numel() for v in meta["model_state"].values())
    bench = run / "logs/benchmarks/bs" / f"train_{arch}.tsv"
    cpu_min = float(pd.read_csv(bench, sep="\t")["cpu_time"].iloc[0]) / 60 if bench.is_file() \
        else float("nan")
    summary = json.loads((ckpt.parent / "train_summary.json").read_text(encoding="utf-8"))
    return ckpt, run / "results/bs/data/split.csv", {
        "arch": arch, "parameters": params, "steps": summary.get("steps"),
        "best_epoch": summary.get("best_epoch"), "cpu_minutes": round(cpu_min, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--bundled", action="append", default=[],
                    help="a bundled model name to score beside the runs (its own split file)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--flip", action="store_true", help="also score flip test-time averaging")
    ap.add_argument("--test", action="store_true", help="also score the BSE-JSRT test patients")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as CSV")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("CXRBS_THREADS", "1")))
    identity: dict[str, pd.DataFrame] = {}
    rows = []
    jobs: list[tuple[str, Path, Path, dict[str, object]]] = []
    for name in args.bundled:
        from cxrbs.bs.bundled import get_bundled, verified_weights

        model = get_bundled(name)
        jobs.append((name, verified_weights(model), model.weights.with_suffix(".split.csv"),
                     {"arch": "bundled"}))
    for run in args.runs:
        ckpt, split, info = _run_info(run)
        jobs.append((run.name, ckpt, split, info))
    for label, ckpt, split, info in jobs:
        for flip in ([False, True] if args.flip else [False]):
            rows.append(score(label, ckpt, split, args.data, flip, args.test, identity, info))
    table = pd.DataFrame(rows)
    print(f"load average {os.getloadavg()[0]:.2f}; validation sets: BSE-JSRT validation "
          "patients (within), SZCH dual-energy pairs (across)"
          + ("; heldout_test = the BSE-JSRT TEST patients" if args.test else ""))
    print(table.to_markdown(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
