"""Every figure of the report, drawn from declared inputs: the stage tables and the explain rule's
arrays. Nothing here runs a model (the explain rule did that, :mod:`cxrbs.explain.analysis`).

``make_all_figures`` draws whatever the results allow and says in ``notes`` why a part is missing
instead of failing: the report must still be built when, e.g., no expert boxes exist. The plots
themselves live in :mod:`~cxrbs.report.figures_bs`, :mod:`~cxrbs.report.figures_cls` and
:mod:`~cxrbs.report.figures_explain`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.layout import WORKFLOW, Layout
from cxrbs.explain.store import ExplainFiles, load_arrays, read_notes
from cxrbs.report.figures_bs import (
    plot_bs_examples,
    plot_bs_forest,
    plot_bs_metrics,
    plot_bs_scatter,
    plot_training_curves,
)
from cxrbs.report.figures_cls import (
    plot_cls_metrics,
    plot_confusion,
    plot_metric_comparison,
    plot_roc,
)
from cxrbs.report.figures_explain import plot_crm_grid, plot_tsne
from cxrbs.report.figures_summary import plot_summary
from cxrbs.report.style import VARIANTS

log = logging.getLogger(__name__)

SECTIONS = ("summary", "bone_suppression", "classification", "statistics", "relevance_maps",
            "feature_space")


@dataclass
class _Collector:
    out_dir: Path
    figures: dict[str, list[Path]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    notes: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SECTIONS})

    def add(self, section: str, path: Path) -> None:
        self.figures[section].append(Path(path))
        log.info("wrote %s", path)

    def note(self, section: str, text: str) -> None:
        self.notes[section].append(text)
        log.info("%s: %s", section, text)

    def path(self, name: str) -> Path:
        return self.out_dir / f"{name}.png"


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def _datasets(config: Mapping[str, Any], role: str) -> list[str]:
    specs = (config.get("datasets") or {}).items()
    return sorted(n for n, s in specs if (s or {}).get("role") == role)


def make_all_figures(results_dir: str | Path, config: Mapping[str, Any], out_dir: str | Path, *,
                     explain: ExplainFiles | None = None,
                     notes: dict[str, list[str]] | None = None) -> dict[str, list[Path]]:
    """Every figure the results allow, by report section.

    ``results_dir`` locates the stage tables (a :class:`~cxrbs.core.layout.Layout` root);
    ``explain`` names the explain rule's outputs (default: their places under ``results_dir``).
    Parts whose inputs are absent are skipped with a one-line reason added to ``notes``, after
    the explain rule's own notes of the same section.
    """
    layout = Layout(Path(results_dir))
    explain = explain or ExplainFiles.of(layout)
    col = _Collector(Path(out_dir))
    _summary_figure(layout, col)
    _bone_suppression_figures(layout, col)
    _bs_paired_figures(layout, col)
    _bs_example_figures(explain, col)
    _classification_figures(layout, config, col)
    _crm_figures(explain, col)
    _tsne_figures(explain, col)
    if explain.notes.is_file():
        for section, lines in read_notes(explain.notes).items():
            col.notes.setdefault(section, []).extend(lines)
    else:
        col.note("relevance_maps", f"no explain-stage outputs ({WORKFLOW.explain_notes}) yet")
    if notes is not None:
        for section, lines in col.notes.items():
            notes.setdefault(section, []).extend(lines)
    return col.figures


def _read_best(layout: Layout) -> dict[str, Any]:
    import json

    if not layout.bs_best.is_file():
        return {}
    try:
        return dict(json.loads(layout.bs_best.read_text(encoding="utf-8")))
    except ValueError:
        return {}


def _selected_arch(best: Mapping[str, Any]) -> str | None:
    arch = best.get("arch") or ("pretrained" if best.get("training_skipped") else None)
    return str(arch) if arch else None


def _summary_figure(layout: Layout, col: _Collector) -> None:
    """The first screen's figure: primary ΔAUC per TB set and the selected model's gain."""
    best = _read_best(layout)
    comparison = _read_csv(layout.cls_comparison)
    paired = _read_csv(layout.bs_paired)
    try:
        col.add("summary", plot_summary(comparison, paired, _selected_arch(best),
                                        str(best.get("metric", "psnr")), col.path("summary")))
    except (ValueError, KeyError) as exc:
        col.note("summary", f"no summary figure: {exc}")


def _bs_paired_figures(layout: Layout, col: _Collector) -> None:
    """The forest plot of every model vs identity and the selected model's per-image scatter."""
    sec = "bone_suppression"
    paired = _read_csv(layout.bs_paired)
    if paired is None or paired.empty:
        col.note(sec, f"no paired tests ({WORKFLOW.bs_paired}) yet: no forest plot")
    else:
        try:
            col.add(sec, plot_bs_forest(paired, col.path("bs_forest")))
        except ValueError as exc:
            col.note(sec, f"no forest plot: {exc}")
    best = _read_best(layout)
    arch = _selected_arch(best)
    summary = _read_csv(layout.bs_summary)
    if arch is None or summary is None or summary.empty:
        return
    metric = "psnr"
    per_image = {}
    for test in sorted(summary["test_set"].astype(str).unique()):
        model_csv, identity_csv = layout.bs_eval(arch, test), layout.bs_eval("identity", test)
        if not (model_csv.is_file() and identity_csv.is_file()):
            continue
        model = pd.read_csv(model_csv, dtype={"name": str})[["name", metric]]
        identity = pd.read_csv(identity_csv, dtype={"name": str})[["name", metric]]
        per_image[test] = model.merge(identity, on="name", suffixes=("_m", "_i")).rename(
            columns={f"{metric}_m": "model", f"{metric}_i": "identity"})
    if per_image:
        col.add(sec, plot_bs_scatter(per_image, col.path("bs_scatter"), model_name=arch,
                                     metric=metric))


def _bone_suppression_figures(layout: Layout, col: _Collector) -> None:
    sec = "bone_suppression"
    summary = _read_csv(layout.bs_summary)
    if summary is None or summary.empty:
        col.note(sec, f"no bone-suppression evaluation ({WORKFLOW.bs_summary}) yet")
    else:
        col.add(sec, plot_bs_metrics(summary, col.path("bs_metrics")))
    found = sorted(layout.bs_dir.joinpath("models").glob("*/history.csv"))
    histories = {p.parent.name: pd.read_csv(p) for p in found}
    if histories:
        col.add(sec, plot_training_curves(histories, col.path("bs_training_curves"),
                                          title="Bone-suppression training (MAE + MS-SSIM loss)"))
    else:
        col.note(sec, "no bone-suppression training history found")


def _bs_example_figures(explain: ExplainFiles, col: _Collector) -> None:
    """Best, median and worst pair per test set, as the explain rule picked and predicted them."""
    table = _read_csv(explain.bs_examples_table, dtype={"name": str, "test_set": str})
    if table is None or table.empty or not explain.bs_examples.is_file():
        return  # the explain rule's notes say why
    arrays = load_arrays(explain.bs_examples)
    for test, rows in table.groupby("test_set", sort=False):
        col.add("bone_suppression", plot_bs_examples(
            arrays[f"source_{test}"], arrays[f"prediction_{test}"], arrays[f"target_{test}"],
            rows["name"].tolist(), rows["psnr"].to_numpy(float).tolist(),
            col.path(f"bs_examples_{test}"), metric="PSNR", model_name=str(rows["arch"].iloc[0])))


def _classification_figures(layout: Layout, config: Mapping[str, Any], col: _Collector) -> None:
    sec = "classification"
    cls_cfg = config.get("cls") or {}
    threshold = float(cls_cfg.get("threshold", 0.5))
    history = _read_csv(layout.cls_pretrain_history)
    if history is not None and not history.empty:
        col.add(sec, plot_training_curves({"pretrain": history}, col.path("cls_pretrain_curves"),
                                          title="Classifier pretraining (normal vs abnormal CXR)"))
    for tb in _datasets(config, "tb"):
        files = sorted((layout.cls_dir / tb).glob("*/fold*/predictions.csv"))
        if not files:
            col.note(sec, f"{tb}: no fold predictions yet")
            continue
        preds = pd.concat([pd.read_csv(p, dtype={"patient": str, "image": str}) for p in files],
                          ignore_index=True)
        col.add(sec, plot_roc(preds, col.path(f"cls_roc_{tb}"),
                              title=f"{tb}: ROC curves (thin: folds; thick: pooled)"))
        col.add(sec, plot_confusion(
            preds, threshold, col.path(f"cls_confusion_{tb}"),
            title=f"{tb}: pooled confusion matrices (threshold {threshold:g})"))
    metrics = _read_csv(layout.cls_metrics, dtype={"fold": str})
    if metrics is None or metrics.empty:
        col.note(sec, f"no classification metrics ({WORKFLOW.cls_metrics}) yet")
    else:
        for dataset in sorted(metrics["dataset"].astype(str).unique()):
            out = col.path(f"cls_metrics_{dataset}")
            col.add(sec, plot_cls_metrics(metrics, out, dataset=dataset))
    comparison = _read_csv(layout.cls_comparison)
    if comparison is None or comparison.empty:
        col.note("statistics", f"no variant comparison ({WORKFLOW.cls_comparison}) yet")
    else:
        col.add("statistics", plot_metric_comparison(comparison, col.path("cls_comparison")))


def _crm_figures(explain: ExplainFiles, col: _Collector) -> None:
    """One grid per TB set: its first fold's right and wrong TB cases with both models' maps."""
    cases = _read_csv(explain.crm_cases, dtype={"image": str, "dataset": str})
    if cases is None or cases.empty or not explain.crm_maps.is_file():
        return
    arrays = load_arrays(explain.crm_maps)
    for tb, rows in cases.groupby("dataset", sort=False):
        titles = [f"{r.image}: TB, bone-suppressed model {'right' if r.correct else 'wrong'} "
                  f"(p={r.p_bone_suppressed:.2f}; baseline p={r.p_baseline:.2f})"
                  for r in rows.itertuples()]
        box_rows = arrays[f"boxes_{tb}"]
        boxes = [[(float(x), float(y), float(w), float(h))
                  for c, x, y, w, h in box_rows if int(c) == k] for k in range(len(rows))]
        col.add("relevance_maps", plot_crm_grid(
            arrays[f"image_baseline_{tb}"], arrays[f"image_bone_suppressed_{tb}"],
            arrays[f"crm_baseline_{tb}"], arrays[f"crm_bone_suppressed_{tb}"], titles,
            col.path(f"crm_{tb}"), gradcam_orig=arrays[f"cam_baseline_{tb}"],
            gradcam_bs=arrays[f"cam_bone_suppressed_{tb}"],
            boxes=boxes if len(box_rows) else None))


def _tsne_figures(explain: ExplainFiles, col: _Collector) -> None:
    """t-SNE of each TB set's first fold, with that fold's cluster scores in the titles."""
    tsne = _read_csv(explain.tsne, dtype={"image": str, "dataset": str})
    if tsne is None or tsne.empty:
        return
    scores_table = pd.read_csv(explain.feature_space, dtype={"dataset": str})
    for tb, rows in tsne.groupby("dataset", sort=False):
        fold = int(rows["fold"].iloc[0])
        embs = {v: rows[rows["variant"] == v][["x", "y"]].to_numpy(float) for v in VARIANTS}
        labels = rows[rows["variant"] == VARIANTS[0]]["label"].to_numpy(int)
        sel = scores_table[(scores_table["dataset"] == tb) & (scores_table["fold"] == fold)]
        scores = {str(r.variant): {"silhouette": float(r.silhouette),
                                   "davies_bouldin": float(r.davies_bouldin)}
                  for r in sel.itertuples()}
        col.add("feature_space", plot_tsne(
            embs["baseline"], embs["bone_suppressed"], np.asarray(labels), scores,
            col.path(f"tsne_{tb}"),
            title=f"{tb}, fold {fold} held-out images: t-SNE of pooled deep features"))
