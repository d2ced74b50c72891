"""Packaging the workflow's selected bone-suppression model as a bundled model (issue 20).

The bundled model is a workflow product, not a side script's: ``snakemake -- bundle`` trains,
scores and then calls :func:`package_model`, which writes into one folder

* ``<name>.pt``: the selected checkpoint, re-saved in the one cxrbs format with a ``bundle``
  field (name, version) added; nothing else changes, so every field is one the package writes;
* ``<name>.split.csv``: the patient split the model was trained, validated and tested on;
* ``<name>.metadata.json``: machine-readable facts in the spirit of a MONAI bundle's
  ``metadata.json`` (version, framework versions, task, data source and licence, intended use,
  input/output spec, evaluation metrics with test set and resolution);
* ``<name>.md``: the model card, rendered from ``card_template.md`` with the measured numbers;
* ``models.json``: the index entry (file, sha256, card, metadata) the package reads;
* ``<name>_figure.png`` when a figure input is configured: input, output and removed bone layer.

Copying the folder's files into ``src/cxrbs/bundled/`` installs the model (README).
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.bs.evaluate import HIGHER_IS_BETTER
from cxrbs.bs.paired_stats import IDENTITY, paired_tests
from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError

log = logging.getLogger(__name__)

__all__ = ["card_text", "gain_table", "model_metadata", "package_model"]

TEMPLATE = Path(__file__).with_name("card_template.md")
CARD_METRICS = ("psnr", "ms_ssim", "ssim", "mae")
_LABELS = {"psnr": "PSNR (dB)", "ms_ssim": "MS-SSIM", "ssim": "SSIM", "mae": "MAE"}
#: How each evaluated set is described on the card; which sets are validation is declared here.
ROLE = {"validation": "validation (within the institution; early stopping and selection)",
        "heldout_test": "test (within the institution; reported only)"}
CROSS_ROLE = "cross-institution validation (another hospital, dual-energy targets)"


def _version(name: str) -> int:
    m = re.search(r"-v(\d+)$", name)
    if m is None:
        raise CxrbsError(f"bundle name {name!r} must end in -v<N> (e.g. cxrbs-bs-unet16-v2)")
    return int(m.group(1))


def gain_table(per_image: pd.DataFrame, *, arch: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Model vs identity per evaluated set and card metric: means, gain, CI, Holm p, images better."""
    tests = paired_tests(per_image, selected=arch, n_boot=n_boot, seed=seed,
                         metrics=CARD_METRICS)
    tests = tests[(tests["model_a"] == arch) & (tests["model_b"] == IDENTITY)].copy()
    better = []
    for r in tests.itertuples(index=False):
        wide = per_image[per_image["test_set"] == r.test_set].pivot(
            index="name", columns="arch", values=r.metric)
        d = wide[arch] - wide[IDENTITY]
        better.append(int((d > 0).sum() if HIGHER_IS_BETTER[r.metric] else (d < 0).sum()))
    tests["n_better"] = better
    return tests.reset_index(drop=True)


def _fmt(x: float, metric: str, signed: bool = False) -> str:
    if not np.isfinite(x):
        return "n/a"
    digits = 2 if metric == "psnr" else 4
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _role(test_set: str) -> str:
    return ROLE.get(test_set, CROSS_ROLE)


def _markdown_tables(gains: pd.DataFrame, per_image: pd.DataFrame, arch: str) -> str:
    out = []
    for test_set in sorted(gains["test_set"].unique(), key=lambda t: (t != "validation", t)):
        sub = gains[gains["test_set"] == test_set]
        n = int(sub["n"].max())
        out.append(f"**{test_set}** — {_role(test_set)}; n = {n}\n")
        out.append("| metric | model | identity | gain [95% CI] | Wilcoxon p (Holm) | images better |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for r in sub.itertuples(index=False):
            ci = f"[{_fmt(r.ci_low, r.metric, True)}, {_fmt(r.ci_high, r.metric, True)}]"
            p = "n/a" if not np.isfinite(r.p_adjusted) else f"{r.p_adjusted:.2g}"
            out.append(f"| {_LABELS[r.metric]} | {_fmt(r.mean_a, r.metric)} | "
                       f"{_fmt(r.mean_b, r.metric)} | {_fmt(r.difference, r.metric, True)} {ci} | "
                       f"{p} | {r.n_better} / {r.n} |")
        if n <= 5:  # a handful of pairs: show each one
            wide = per_image[per_image["test_set"] == test_set]
            out.append("\n| pair | PSNR model | PSNR identity | PSNR gain | MS-SSIM gain |")
            out.append("|---|---:|---:|---:|---:|")
            for name, g in wide.groupby("name"):
                m, i = g[g["arch"] == arch].iloc[0], g[g["arch"] == IDENTITY].iloc[0]
                out.append(f"| {name} | {m.psnr:.2f} | {i.psnr:.2f} | {m.psnr - i.psnr:+.2f} | "
                           f"{m.ms_ssim - i.ms_ssim:+.4f} |")
        out.append("")
    return "\n".join(out)


def model_metadata(*, name: str, meta: Mapping[str, Any], gains: pd.DataFrame,
                   n_params: int, bundle_cfg: Mapping[str, Any], split: pd.DataFrame,
                   train_summary: Mapping[str, Any] | None, sha256: str) -> dict[str, Any]:
    """The machine-readable description of a bundled model (MONAI-bundle-like fields)."""
    size = meta.get("input_size")
    counts = split["split"].value_counts().to_dict() if "split" in split else {}
    metrics: dict[str, Any] = {}
    for r in gains.itertuples(index=False):
        metrics.setdefault(str(r.test_set), {
            "role": _role(str(r.test_set)), "n": int(r.n),
            "resolution": "full-resolution output (cxrbs suppress), scored at "
                          f"{size}x{size} with the source's 1/99 percentile stretch"})
        metrics[str(r.test_set)][str(r.metric)] = {
            "model": float(r.mean_a), "identity": float(r.mean_b), "gain": float(r.difference),
            "estimand": str(getattr(r, "estimand", "mean of the per-image differences")),
            "mean_gain": float(getattr(r, "mean_difference", r.difference)),
            "gain_ci95": [float(r.ci_low), float(r.ci_high)],
            "ci_method": str(r.ci_method), "test": str(r.test), "p_adjusted": float(r.p_adjusted),
            "adjustment": str(r.adjustment), "n_better": int(r.n_better)}
    versions = dict(meta.get("versions") or {})
    return {
        "schema": "cxrbs bundled model metadata, version 1 (after MONAI bundle metadata.json)",
        "name": name,
        "version": f"{_version(name)}.0.0",
        "description": str(bundle_cfg.get("description", "")),
        "task": "bone suppression of frontal chest radiographs (image to soft-tissue image)",
        "intended_use": "research only; not a medical device, not for diagnosis or patient "
                        "management",
        "data_source": str(bundle_cfg.get("data_source", "")),
        "data_license": str(bundle_cfg.get("data_license", "")),
        "framework": {"torch": versions.get("torch"), "python": versions.get("python"),
                      "cxrbs": versions.get("cxrbs")},
        "sha256": sha256,
        "model": {"name": meta.get("model_name"), "kwargs": meta.get("model_kwargs"),
                  "parameters": int(n_params), "output_mode": meta.get("output_mode"),
                  "seed": meta.get("seed")},
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "grayscale radiograph", "num_channels": 1,
                "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                "polarity": "display (lungs dark, bone bright); DICOM MONOCHROME1 is inverted "
                            "on reading",
                "preprocessing": f"resize to {size}x{size}, stretch the {meta.get('low_pct')}/"
                                 f"{meta.get('high_pct')} percentiles to [0, 1]"}},
            "outputs": {"pred": {
                "type": "image", "format": "soft-tissue (bone-suppressed) image",
                "num_channels": 1, "spatial_shape": [size, size], "dtype": "float32",
                "value_range": [0, 1], "polarity": "as the input",
                "full_resolution": "cxrbs suppress: the bone layer (input - output) is mapped "
                                   "back, upsampled and subtracted at the input's resolution"}},
        },
        "split": {str(k): int(v) for k, v in counts.items()},
        "training": {k: train_summary.get(k) for k in
                     ("epochs_run", "best_epoch", "steps", "select_on", "best_val_psnr_gain",
                      "train_seconds", "config")} if train_summary else None,
        "eval_metrics": metrics,
    }


def _headline(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The few figures `cxrbs models` prints: PSNR gain with CI per evaluated set."""
    out = {}
    for test_set, m in metadata.get("eval_metrics", {}).items():
        if "psnr" in m:
            g = m["psnr"]
            out[f"{test_set} PSNR gain over identity (n = {m['n']})"] = (
                f"{g['gain']:+.2f} dB [95% CI {g['gain_ci95'][0]:+.2f}, {g['gain_ci95'][1]:+.2f}]")
    return out


def card_text(metadata: Mapping[str, Any], tables: str, *, figure: str | None,
              recipe_command: str, methods: Mapping[str, str] | None = None) -> str:
    """The model card, from the template; every number comes from ``metadata`` or ``tables``."""
    model = metadata["model"]
    training = metadata.get("training") or {}
    cfg = dict(training.get("config") or {})
    recipe = ", ".join(f"{k} {cfg[k]}" for k in (
        "optimizer", "lr", "schedule", "warmup_frac", "epochs", "steps_per_epoch", "batch_size",
        "crop_size", "ema_decay", "grad_clip", "select_on", "amp") if k in cfg)
    aug = cfg.get("online_augment") or {}
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        name=metadata["name"], version=metadata["version"], sha256=metadata["sha256"],
        description=metadata["description"], arch=model["name"],
        kwargs=json.dumps(model["kwargs"]), params=f"{model['parameters']:,}",
        output_mode=model["output_mode"], seed=model["seed"],
        size=metadata["network_data_format"]["inputs"]["image"]["spatial_shape"][0],
        data_source=metadata["data_source"], data_license=metadata["data_license"],
        split=", ".join(f"{v} {k}" for k, v in sorted(metadata["split"].items())),
        recipe=recipe or "see metadata.json", augment=json.dumps(aug) if aug else "none",
        steps=training.get("steps", "n/a"), best_epoch=training.get("best_epoch", "n/a"),
        minutes=f"{float(training.get('train_seconds') or 0) / 60:.0f}",
        tables=tables, command=recipe_command,
        figure=f"![input, output and removed bone layer]({figure})" if figure else "",
        torch=metadata["framework"].get("torch"),
        estimand=(methods or {}).get("estimand", "mean of the per-image differences"),
        ci_method=(methods or {}).get("ci_method", "95% CI"),
        test=(methods or {}).get("test", "Wilcoxon signed-rank"),
    )


def package_model(*, name: str, checkpoint: Path, per_image: pd.DataFrame, arch: str,
                  split_csv: Path, outdir: Path, bundle_cfg: Mapping[str, Any], seed: int,
                  train_summary: Mapping[str, Any] | None = None, figure: Path | None = None,
                  recipe_command: str = "") -> dict[str, Path]:
    """Write the bundle folder (see module docstring); returns its files by role."""
    from cxrbs.bs.predict import load_bs_model
    from cxrbs.models.checkpoint import WEIGHTS, save_checkpoint, sha256_of

    import torch

    model, meta = load_bs_model(checkpoint)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw = {k: v for k, v in raw.items() if k != WEIGHTS}
    raw["output_mode"] = str(getattr(model, "output", raw.get("output_mode")))
    raw["bundle"] = {"name": name, "version": _version(name)}
    outdir = atomic.ensure_dir(outdir)
    files = {"weights": outdir / f"{name}.pt", "split": outdir / f"{name}.split.csv",
             "metadata": outdir / f"{name}.metadata.json", "card": outdir / f"{name}.md",
             "index": outdir / "models.json"}
    save_checkpoint(files["weights"], raw, model.state_dict())
    size_mb = files["weights"].stat().st_size / 2**20
    if size_mb > 10:
        raise CxrbsError(f"{files['weights']} is {size_mb:.1f} MB: bundled weights must stay "
                         "<= 10 MB (pick a smaller architecture)")
    split = pd.read_csv(split_csv, dtype={"pair_id": str, "patient_id": str})
    atomic.write_csv(files["split"], split)
    gains = gain_table(per_image, arch=arch, n_boot=int(bundle_cfg.get("n_boot", 2000)),
                       seed=seed)
    sha = sha256_of(files["weights"])
    metadata = model_metadata(name=name, meta={**meta, "output_mode": raw["output_mode"]},
                              gains=gains, n_params=sum(p.numel() for p in model.parameters()),
                              bundle_cfg=bundle_cfg, split=split, train_summary=train_summary,
                              sha256=sha)
    atomic.write_json(files["metadata"], metadata)
    if figure is not None:
        files["figure"] = figure
    first = gains.iloc[0]
    methods = {"estimand": str(first.get("estimand", "mean of the per-image differences")),
               "ci_method": str(first["ci_method"]).replace(" (exact)", "").replace(
                   " (normal approx.)", ""), "test": str(first["test"])}
    card = card_text(metadata, _markdown_tables(gains, per_image, arch),
                     figure=figure.name if figure is not None else None,
                     recipe_command=recipe_command, methods=methods)
    atomic.write_text(files["card"], card)
    index = {name: {"file": files["weights"].name, "sha256": sha, "card": files["card"].name,
                    "metadata": files["metadata"].name, "default": True,
                    "description": metadata["description"], "figures": _headline(metadata)}}
    atomic.write_json(files["index"], index)
    log.info("packaged %s (%.1f MB, sha256 %s) in %s", name, size_mb, sha[:16], outdir)
    return files
