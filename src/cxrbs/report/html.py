"""The one self-contained HTML results report: figures inlined as base64 PNGs, CSS inline.

A researcher can mail the single file. It holds no timestamp, so a rerun on the same results
gives the same bytes. Missing optional parts (no boxes, a stage not run) become a one-line note.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cxrbs.core.atomic import write_text
from cxrbs.bs.evaluate import HIGHER_IS_BETTER as BS_HIGHER_IS_BETTER
from cxrbs.bs.evaluate import METRICS as BS_METRICS
from cxrbs.core.errors import CxrbsError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE_CLASS = "cxrbs-table"
SECTION_TITLES = {
    "data": "Data",
    "bone_suppression": "Bone suppression",
    "classification": "Classification",
    "statistics": "Statistics",
    "relevance_maps": "Relevance maps",
    "feature_space": "Feature space",
    "configuration": "Configuration and software",
}
CLS_METRICS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "mcc")
SOFTWARE = ("torch", "numpy", "pandas", "scikit-learn", "scipy", "matplotlib", "snakemake", "cxrbs")
ROLE_ORDER = ("bs_train", "bs_test", "pretrain", "tb", "weights")
NOT_BETTER = "none: NOT better than leaving the image unchanged"

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1150px;
margin:0 auto;padding:1em 1.5em 3em;color:#1d1d1d;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}
h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
.banner{background:#b00020;color:#fff;padding:.9em 1.1em;border-radius:6px;font-weight:600;
margin:1em 0}
.warning{background:#fff4e5;border-left:5px solid #e65100;padding:.6em 1em;margin:.8em 0}
.note{color:#555;font-style:italic;margin:.3em 0}
table.cxrbs-table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em}
table.cxrbs-table th,table.cxrbs-table td{border:1px solid #d0d0d0;padding:.25em .55em;
text-align:right}
table.cxrbs-table th{background:#f0f0f0}
table.cxrbs-table tr:nth-child(even) td{background:#fafafa}
table.cxrbs-table td:first-child,table.cxrbs-table th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e0e0e0}
figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.82em}
nav ul{columns:2;font-size:.92em}details{margin:.5em 0}summary{cursor:pointer;color:#0b57d0}
"""

#: Caption per figure-name prefix (the rest of the name is the data set or test set).
CAPTIONS = {
    "bs_metrics": "Quality of each bone-suppression model, mean with 95% CI; the identity "
    "baseline (prediction = input) is the hatched grey bar and the dashed line.",
    "bs_training_curves": "Bone-suppression training and validation loss per epoch.",
    "bs_examples": "Best, median and worst test image by PSNR for the selected model; the last "
    "two columns share one colour scale: the bone layer left over vs the bone layer itself.",
    "cls_pretrain_curves": "Classifier pretraining: loss and validation AUC per epoch.",
    "cls_roc": "ROC curves: thin per fold, thick pooled out-of-fold; dashed grey the HOG floor.",
    "cls_confusion": "Pooled out-of-fold confusion matrices at the configured threshold.",
    "cls_metrics": "Pooled classification metrics with 95% CIs; hatched bars are the HOG floor.",
    "cls_comparison": "Bone-suppressed minus baseline per metric and test, 95% CI and p-value.",
    "crm": "Class-selective relevance maps and Grad-CAM of held-out TB cases (first fold's "
    "models), original and bone-suppressed side by side.",
    "tsne": "t-SNE of the pooled deep features of the first fold's held-out images.",
}


# ---------------------------------------------------------------------------------------------
# small HTML helpers
# ---------------------------------------------------------------------------------------------
def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _warning(text: str) -> str:
    return f'<div class="warning">{_esc(text)}</div>'


def format_number(value: Any) -> Any:
    """Floats to 4 significant digits (NaN -> 'n/a'); anything else unchanged."""
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.4g}"
    return value


def table_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table with the report's CSS class and 4-significant-digit floats."""
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = shown[column].map(format_number).astype(object)
    return shown.to_html(index=False, classes=TABLE_CLASS, border=0, na_rep="n/a", escape=True)


def _interval(value: float, low: float, high: float) -> str:
    """'value [low, high]' with 4 significant digits; the CI part left out where undefined."""
    text = str(format_number(float(value)))
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{format_number(float(low))}, {format_number(float(high))}]"
    return text


def figure_caption(stem: str) -> str:
    """The caption of a figure file name; the data-set suffix is named before it."""
    for prefix, text in sorted(CAPTIONS.items(), key=lambda kv: -len(kv[0])):
        if stem == prefix or stem.startswith(prefix + "_"):
            suffix = stem[len(prefix) + 1 :]
            return f"{suffix}: {text}" if suffix else text
    return stem.replace("_", " ")


def image_html(path: str | Path, caption: str | None = None) -> str:
    """One PNG embedded as a data URI, so the report needs no file beside it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _note(f"figure {path} could not be read ({exc.strerror or exc})")
    if not data.startswith(PNG_SIGNATURE):
        return _note(f"figure {path} is not a PNG file; left out")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = _esc(caption or figure_caption(path.stem))
    return f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CxrbsError(
            f"{path} is not valid JSON ({exc}); delete it and rerun the workflow"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def _datasets(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items = [(str(n), dict(s or {})) for n, s in (config.get("datasets") or {}).items()]
    rank = {r: i for i, r in enumerate(ROLE_ORDER)}
    return sorted(items, key=lambda item: (rank.get(item[1].get("role"), 99), item[0]))


def _sources(config: Mapping[str, Any], resources: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name, _ in _datasets(config):
        source = _read_json(resources / name / "source.json")
        if source is not None:
            out[name] = source
    return out


def is_synthetic(config: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when the config says so or any data set was made of phantoms."""
    return bool(config.get("synthetic")) or any(bool(s.get("synthetic")) for s in sources.values())


def _label_counts(labels: pd.Series) -> str:
    counts = labels.dropna().astype(int).value_counts().sort_index()
    return "; ".join(f"{k}: {v}" for k, v in counts.items()) or "unlabelled"


def _dataset_row(results: Path, name: str, spec: Mapping[str, Any],
                 source: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "data set": name, "role": spec.get("role", ""), "origin": source.get("origin", "n/a"),
        "synthetic": "yes" if source.get("synthetic") else "no",
        "images": "not prepared", "patients": "", "labels": "", "pairs": "",
    }  # fmt: skip
    if spec.get("role") == "weights":
        row["images"] = "(weights file)"
        return row
    manifest = _read_csv(results / "data" / name / "manifest.csv", dtype={"patient_id": str})
    if manifest is not None:
        paired = "target_path" in manifest and manifest["target_path"].notna().any()
        labels = _label_counts(manifest["label"]) if "label" in manifest else "n/a"
        row.update({"images": len(manifest), "patients": int(manifest["patient_id"].nunique()),
                    "labels": labels, "pairs": "yes" if paired else "no"})
    return row


def _fold_counts(name: str, folds: pd.DataFrame) -> pd.DataFrame:
    out = []
    for fold, g in folds.groupby("fold", sort=True):
        labels = g["label"].astype(int)
        out.append({"data set": name, "fold": int(fold), "images": len(g),
                    "patients": int(g["patient_id"].nunique()),
                    "normal (0)": int((labels == 0).sum()), "TB (1)": int((labels == 1).sum())})
    return pd.DataFrame(out)


def _data_section(results: Path, config: Mapping[str, Any],
                  sources: Mapping[str, Mapping[str, Any]]) -> str:
    rows, fold_tables = [], []
    for name, spec in _datasets(config):
        rows.append(_dataset_row(results, name, spec, sources.get(name, {})))
        folds = _read_csv(results / "data" / name / "folds.csv", dtype={"patient_id": str})
        if folds is not None:
            fold_tables.append(_fold_counts(name, folds))
    if not rows:
        return _note("no data sets in the configuration")
    parts = [table_html(pd.DataFrame(rows)), "<h3>Patient-level folds of the TB sets</h3>"]
    if fold_tables:
        parts.append(table_html(pd.concat(fold_tables, ignore_index=True)))
        parts.append(_note("Both variants (original and bone-suppressed) use these same folds."))
    else:
        parts.append(_note("no folds.csv found for any TB set"))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Bone suppression
# ---------------------------------------------------------------------------------------------
def bs_summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per test set and architecture, 'mean [CI]' per metric, and which metrics beat the
    identity baseline (prediction = input), so a model that does not is flagged in plain words."""
    metrics = [m for m in BS_METRICS if m in set(summary["metric"])]
    metrics += sorted(set(summary["metric"]) - set(metrics))
    rows = []
    for (test, arch), g in summary.groupby(["test_set", "arch"], sort=True):
        g = g.set_index("metric")
        ident = summary[(summary["test_set"] == test) & (summary["arch"] == "identity")]
        row: dict[str, Any] = {"test set": test, "model": arch,
                               "n": int(g["n"].max()) if "n" in g else "n/a"}
        for m in metrics:
            row[m] = (_interval(g.at[m, "mean"], g.at[m, "ci_low"], g.at[m, "ci_high"])
                      if m in g.index else "n/a")
        row["beats identity on"] = ("(reference)" if arch == "identity"
                                    else _beats(g, ident.set_index("metric"), metrics))
        rows.append(row)
    frame = pd.DataFrame(rows)
    # identity last within each test set: the models first, the reference under them
    frame["_ref"] = frame["model"] == "identity"
    return frame.sort_values(["test set", "_ref", "model"], kind="stable").drop(columns="_ref")


def _beats(model: pd.DataFrame, identity: pd.DataFrame, metrics: list[str]) -> str:
    better = []
    for m in metrics:
        if m in model.index and m in identity.index and m in BS_HIGHER_IS_BETTER:
            diff = float(model.at[m, "mean"]) - float(identity.at[m, "mean"])
            if diff != 0 and (diff > 0) == BS_HIGHER_IS_BETTER[m]:
                better.append(m)
    return ", ".join(better) if better else NOT_BETTER


def _best_model_html(best: Mapping[str, Any]) -> list[str]:
    value = format_number(float(best.get("value", math.nan)))
    identity = format_number(float(best.get("identity_value", math.nan)))
    parts = [
        f"<p><b>Selected model: {_esc(best.get('arch'))}</b> ({_esc(best.get('metric'))} on "
        f"{_esc(best.get('test_set'))}: {_esc(value)}; identity baseline {_esc(identity)}).</p>",
        f"<p>{_esc(best.get('reason', ''))}</p>",
    ]
    if not best.get("beats_identity", True):
        parts.append(_warning(
            f"The selected model {best.get('arch')} does NOT beat the identity baseline on "
            f"{best.get('metric')}: the bone-suppressed images are no closer to the soft-tissue "
            "targets than the unchanged radiographs."))
    return parts


def _bs_section(results: Path) -> str:
    parts = []
    summary = _read_csv(results / "bs" / "eval" / "summary.csv")
    if summary is None or summary.empty:
        parts.append(_note("no bone-suppression evaluation (results/bs/eval/summary.csv)"))
    else:
        parts.append("<p>Mean [95% CI] over the paired test images. The <b>identity</b> row takes "
                     "the input radiograph itself as the prediction: a model is only useful where "
                     "it beats it.</p>")
        parts.append(table_html(bs_summary_table(summary)))
    best = _read_json(results / "bs" / "best.json")
    if best is None:
        parts.append(_note("no model selected yet (results/bs/best.json)"))
    else:
        parts += _best_model_html(best)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Classification and statistics
# ---------------------------------------------------------------------------------------------
def cls_metrics_table(metrics: pd.DataFrame, folds: Sequence[str]) -> pd.DataFrame:
    """Rows data set x variant x model x fold, 'value [CI]' per metric."""
    sel = metrics[metrics["fold"].astype(str).isin(list(folds))]
    rows = []
    keys = ["dataset", "variant", "model", "fold"]
    for (dataset, variant, model, fold), g in sel.groupby(keys, sort=True):
        g = g.set_index("metric")
        row: dict[str, Any] = {"data set": dataset, "variant": variant, "model": model,
                               "fold": fold, "n": int(g["n"].max())}
        for m in CLS_METRICS:
            row[m] = (_interval(g.at[m, "value"], g.at[m, "ci_low"], g.at[m, "ci_high"])
                      if m in g.index else "n/a")
        rows.append(row)
    return pd.DataFrame(rows)


def floor_warnings(metrics: pd.DataFrame) -> list[str]:
    """Where the HOG + logistic-regression floor reaches the deep model's pooled AUC."""
    pooled = metrics["fold"].astype(str).isin(["pooled", "val"])
    auc = metrics[(metrics["metric"] == "auc") & pooled]
    out = []
    for (dataset, variant), g in auc.groupby(["dataset", "variant"], sort=True):
        by_model = g.set_index("model")["value"]
        if not {"deep", "hog_floor"} <= set(by_model.index):
            continue
        if by_model["hog_floor"] >= by_model["deep"]:
            out.append(f"{dataset}, {variant}: the deep model's AUC ({by_model['deep']:.4g}) does "
                       f"not beat the HOG + logistic-regression floor "
                       f"({by_model['hog_floor']:.4g}); its numbers say little about bone "
                       "suppression.")
    return out


def _init_note(results: Path) -> str:
    """Say how the classifier started: ImageNet weights change what every number below means."""
    summary = results / "cls" / "pretrain" / "train_summary.json"
    if not summary.is_file():
        return _note("classifier initialisation unknown (no results/cls/pretrain/train_summary.json)")
    info = json.loads(summary.read_text(encoding="utf-8"))
    init = str(info.get("init", "unknown"))
    model = str(info.get("model_name", "?"))
    if init == "random":
        text = (f"Classifier {model} was pretrained from random initialisation: no ImageNet "
                "weights were given (cls.weights), unlike the study.")
        return _warning(text) if model.startswith("vgg") else f"<p>{_esc(text)}</p>"
    return f"<p>{_esc(f'Classifier {model} initialised from {init}.')}</p>"


def _cls_section(results: Path) -> str:
    metrics = _read_csv(results / "cls" / "metrics.csv", dtype={"fold": str})
    if metrics is None or metrics.empty:
        return _note("no classification metrics (results/cls/metrics.csv)")
    parts = [_init_note(results)]
    parts += ["<p>Pooled out-of-fold predictions (pretraining: its validation split), value "
             "[95% CI]. <i>deep</i> is the CNN, <i>hog_floor</i> HOG features + logistic "
             "regression on the same splits.</p>",
             table_html(cls_metrics_table(metrics, ["pooled", "val"]))]
    parts += [_warning(w) for w in floor_warnings(metrics)]
    if "ci_method" in metrics:
        methods = sorted(metrics["ci_method"].dropna().astype(str).unique())
        if methods:
            parts.append(_note("Confidence intervals: " + "; ".join(methods) + "."))
    fold_ids = [f for f in metrics["fold"].astype(str).unique() if f not in ("pooled", "val")]
    per_fold = cls_metrics_table(metrics, fold_ids)
    if not per_fold.empty:
        parts.append("<details><summary>Per-fold metrics</summary>" + table_html(per_fold)
                     + "</details>")
    return "\n".join(parts)


def _stats_section(results: Path) -> str:
    comparison = _read_csv(results / "cls" / "comparison.csv")
    if comparison is None or comparison.empty:
        return _note("no variant comparison (results/cls/comparison.csv)")
    cols = ["dataset", "contrast", "family", "metric", "test", "value_arm", "value_reference",
            "difference", "ci_low", "ci_high", "p_value", "p_adjusted", "estimate", "note"]
    shown = comparison[[c for c in cols if c in comparison.columns]]
    return "\n".join([
        "<p>Baseline (original images) vs bone-suppressed, paired on the same images and folds; "
        "difference = bone-suppressed − baseline with its 95% CI. The test is named on every "
        "row.</p>",
        table_html(shown),
        _note("p_value is raw; p_adjusted is Holm-adjusted within the row's family (primary: "
              "across TB data sets; secondary: across all other rows)."),
    ])


# ---------------------------------------------------------------------------------------------
# Relevance maps, feature space, configuration
# ---------------------------------------------------------------------------------------------
def _crm_section(results: Path, config: Mapping[str, Any]) -> str:
    boxes = _read_csv(results / "cls" / "crm_boxes.csv")
    if boxes is None:
        if not (config.get("report") or {}).get("boxes_csv"):
            return _note("No expert boxes configured (report.boxes_csv): localisation is shown, "
                         "not scored.")
        return _note("results/cls/crm_boxes.csv is missing: localisation not scored.")
    if boxes.empty:
        return _note("No held-out image had expert boxes: localisation not scored.")
    summary = (boxes.groupby(["dataset", "variant", "method"], sort=True)["mass_inside"]
               .agg(images="count", mean_mass_inside="mean", median_mass_inside="median")
               .reset_index())
    return "\n".join([
        "<p>Share of each relevance map's mass inside the expert boxes (1 = all of it), each "
        "image scored by the fold model that did not train on it; maps without any relevance "
        "are not counted.</p>",
        table_html(summary),
    ])


def _feature_section(results: Path) -> str:
    table = _read_csv(results / "cls" / "feature_space.csv")
    if table is None or table.empty:
        return _note("no cluster scores (results/cls/feature_space.csv): "
                     "the fold models were not available")
    mean = (table.groupby(["dataset", "variant"], sort=True)[["silhouette", "davies_bouldin"]]
            .mean().reset_index().assign(fold="mean of folds"))
    cols = ["dataset", "variant", "fold", "silhouette", "davies_bouldin"]
    shown = pd.concat([table.astype({"fold": str}), mean], ignore_index=True)[cols]
    return "\n".join([
        "<p>Pooled deep features of each fold's held-out images, scored against the labels: "
        "silhouette (higher = classes better separated) and Davies-Bouldin (lower = more "
        "compact clusters).</p>",
        table_html(shown),
    ])


def _plain(obj: Any) -> Any:
    """Config as plain YAML types (snakemake's config may hold its own mapping classes)."""
    return json.loads(json.dumps(obj, default=str))


def _config_section(config: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    text = yaml.safe_dump(_plain(dict(config)), sort_keys=False, default_flow_style=False)
    soft = pd.DataFrame({"package": list(versions), "version": [str(v) for v in versions.values()]})
    return "\n".join([f"<h3>Configuration</h3><pre>{_esc(text)}</pre>", "<h3>Software</h3>",
                      table_html(soft)])


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers (no timestamps, no host names)."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------
def _section_extras(key: str, figures: Mapping[str, Sequence[str | Path]],
                    notes: Mapping[str, Sequence[str]]) -> str:
    parts = [_note(n) for n in notes.get(key, [])]
    parts += [image_html(p) for p in figures.get(key, [])]
    if key in ("relevance_maps", "feature_space") and not parts:
        parts.append(_note("no figures for this section"))
    return "\n".join(parts)


def _banner(synthetic: bool) -> str:
    if not synthetic:
        return ""
    return ('<div class="banner">SYNTHETIC DEMO DATA: every image in this report is a synthetic '
            "phantom, not a patient. The numbers only show that the pipeline runs; they mean "
            "nothing clinically.</div>")


def build_report(results_dir: str | Path, config: Mapping[str, Any],
                 figures: Mapping[str, Sequence[str | Path]], out_html: str | Path, *,
                 versions: Mapping[str, str], notes: Mapping[str, Sequence[str]] | None = None,
                 resources_dir: str | Path | None = None) -> Path:
    """Write the report; ``figures`` and ``notes`` map section keys (see SECTION_TITLES) to PNG
    paths and one-line notes, as ``cxrbs.report.figures.make_all_figures`` gives them."""
    results = Path(results_dir)
    resources = Path(resources_dir) if resources_dir is not None else results.parent / "resources"
    sources = _sources(config, resources)
    bodies = {
        "data": _data_section(results, config, sources),
        "bone_suppression": _bs_section(results),
        "classification": _cls_section(results),
        "statistics": _stats_section(results),
        "relevance_maps": _crm_section(results, config),
        "feature_space": _feature_section(results),
        "configuration": _config_section(config, versions),
    }
    sections = [
        f'<section id="{key}"><h2>{_esc(title)}</h2>\n{bodies[key]}\n'
        f"{_section_extras(key, figures, notes or {})}</section>"
        for key, title in SECTION_TITLES.items()
    ]
    links = "".join(f'<li><a href="#{k}">{_esc(t)}</a></li>' for k, t in SECTION_TITLES.items())
    doc = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>cxr-bone-suppression results</title>", f"<style>{CSS}</style></head><body>",
        "<h1>Chest X-ray bone suppression and TB classification: results</h1>",
        "<p>Reproduction of Rajaraman et al., <i>Diagnostics</i> 2021, by the "
        "cxr-bone-suppression workflow.</p>",
        _banner(is_synthetic(config, sources)), f"<nav><ul>{links}</ul></nav>", *sections,
        "</body></html>",
    ])  # fmt: skip
    write_text(out_html, doc + "\n")
    return Path(out_html)
