"""The report's sections, one function each, built from the stage tables under a results layout.

A missing table becomes a one-line note naming the file the workflow would have written.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cxrbs.bs.evaluate import HIGHER_IS_BETTER as BS_HIGHER_IS_BETTER
from cxrbs.bs.evaluate import METRICS as BS_METRICS
from cxrbs.cls.plan import plan_status
from cxrbs.core.layout import WORKFLOW, Layout
from cxrbs.report.html_blocks import (
    MORE,
    details,
    downloads,
    esc,
    format_number,
    format_p,
    interval,
    note,
    read_csv,
    read_json,
    table_html,
    warning,
)

CLS_METRICS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "mcc")
SOFTWARE = ("torch", "numpy", "pandas", "scikit-learn", "scipy", "matplotlib", "snakemake", "cxrbs")
ROLE_ORDER = ("bs_train", "bs_test", "pretrain", "tb", "weights")
NOT_BETTER = "none: NOT better than leaving the image unchanged"
NO_PAIRED = "n/a: no paired test against identity (a mean alone decides nothing)"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def _datasets(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items = [(str(n), dict(s or {})) for n, s in (config.get("datasets") or {}).items()]
    rank = {r: i for i, r in enumerate(ROLE_ORDER)}
    return sorted(items, key=lambda item: (rank.get(str(item[1].get("role")), 99), item[0]))


def sources_of(config: Mapping[str, Any], resources: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name, _ in _datasets(config):
        source = read_json(resources / name / "source.json")
        if source is not None:
            out[name] = source
    return out


def is_synthetic(config: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when the config says so or any data set was made of phantoms."""
    return bool(config.get("synthetic")) or any(bool(s.get("synthetic")) for s in sources.values())


def _label_counts(labels: pd.Series) -> str:
    counts = labels.dropna().astype(int).value_counts().sort_index()
    return "; ".join(f"{k}: {v}" for k, v in counts.items()) or "unlabelled"


def _dataset_row(layout: Layout, name: str, spec: Mapping[str, Any],
                 source: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "data set": name, "role": spec.get("role", ""), "origin": source.get("origin", "n/a"),
        "synthetic": "yes" if source.get("synthetic") else "no",
        "images": "not prepared", "patients": "", "labels": "", "pairs": "",
    }  # fmt: skip
    if spec.get("role") == "weights":
        row["images"] = "(weights file)"
        return row
    manifest = read_csv(layout.manifest(name), dtype={"patient_id": str})
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


def data_section(layout: Layout, config: Mapping[str, Any],
                  sources: Mapping[str, Mapping[str, Any]]) -> str:
    rows, fold_tables = [], []
    for name, spec in _datasets(config):
        rows.append(_dataset_row(layout, name, spec, sources.get(name, {})))
        folds = read_csv(layout.folds(name), dtype={"patient_id": str})
        if folds is not None:
            fold_tables.append(_fold_counts(name, folds))
    if not rows:
        return note("no data sets in the configuration")
    parts = [table_html(pd.DataFrame(rows))]
    if fold_tables:
        parts.append(details("Patient-level folds of the TB sets (both arms use these same folds)",
                             table_html(pd.concat(fold_tables, ignore_index=True))))
    else:
        parts.append(note("no folds.csv found for any TB set"))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Bone suppression
# ---------------------------------------------------------------------------------------------
def bs_summary_table(summary: pd.DataFrame, paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per test set and architecture, 'mean [CI]' per metric, and which metrics beat the
    identity baseline (prediction = input), so a model that does not is flagged in plain words.

    "Beats identity" comes from the paired tests (``paired.csv``: Holm-adjusted Wilcoxon p < 0.05
    and the Hodges–Lehmann CI on the better side of 0, column ``a_better``), never from the means
    alone (issue 22); without paired tests the column says so.
    """
    metrics = [m for m in BS_METRICS if m in set(summary["metric"])]
    metrics += sorted(set(summary["metric"]) - set(metrics))
    rows = []
    for (test, arch), g in summary.groupby(["test_set", "arch"], sort=True):
        g = g.set_index("metric")
        row: dict[str, Any] = {"test set": test, "model": arch,
                               "n": int(g["n"].max()) if "n" in g else "n/a"}
        for m in metrics:
            row[m] = (interval(g.at[m, "mean"], g.at[m, "ci_low"], g.at[m, "ci_high"])
                      if m in g.index else "n/a")
        row["beats identity on"] = ("(reference)" if arch == "identity"
                                    else _beats(paired, str(test), str(arch), metrics))
        rows.append(row)
    frame = pd.DataFrame(rows)
    # identity last within each test set: the models first, the reference under them
    frame["_ref"] = frame["model"] == "identity"
    return frame.sort_values(["test set", "_ref", "model"], kind="stable").drop(columns="_ref")


def _beats(paired: pd.DataFrame | None, test_set: str, arch: str, metrics: list[str]) -> str:
    if paired is None or paired.empty or "a_better" not in paired:
        return NO_PAIRED
    rows = paired[(paired["test_set"].astype(str) == test_set)
                  & (paired["model_a"].astype(str) == arch) & (paired["model_b"] == "identity")]
    if rows.empty:
        return NO_PAIRED
    flag = rows.set_index("metric")["a_better"].astype(str).str.lower() == "true"
    better = [m for m in metrics if m in flag.index and bool(flag.loc[m])]
    return ", ".join(better) if better else NOT_BETTER


def _pretrained_html(best: Mapping[str, Any]) -> list[str]:
    """bs.pretrained: say plainly that nothing was trained or selected, and how it scores."""
    name = best.get("pretrained")
    info = best.get("pretrained_model") or {}
    card = f" (model card: {info['card']})" if info.get("card") else ""
    parts = [
        f"<p><b>Pretrained model {esc(name)} used; bone-suppression training skipped "
        f"(bs.pretrained).</b>{esc(card)} It is the only candidate: no model was selected.</p>",
        "<p>Mean " + esc(best.get("metric")) + ": " + esc("; ".join(
            f"{test} {format_number(float(v.get('value', math.nan)))} (identity "
            f"{format_number(float(v.get('identity_value', math.nan)))})"
            for test, v in (best.get("per_set") or {}).items())) + ".</p>",
        note("scores on images the pretrained model was trained on are not held-out results: "
             "see its model card for its training data"),
    ]
    trained, size = info.get("input_size"), info.get("image_size")
    if size is not None and trained not in (None, size):
        parts.append(note(f"the pretrained model was trained at {trained} px; this workflow's "
                          f"images are {size} px (image_size)"))
    if not best.get("beats_identity", True):
        parts.append(warning(
            f"The pretrained model {name} does NOT beat the identity baseline on "
            f"{best.get('metric')} on every evaluated set: its bone-suppressed images are not "
            "closer to the soft-tissue targets than the unchanged radiographs there."))
    return parts


def _best_model_html(best: Mapping[str, Any]) -> list[str]:
    if best.get("training_skipped"):
        return _pretrained_html(best)
    value = format_number(float(best.get("value", math.nan)))
    identity = format_number(float(best.get("identity_value", math.nan)))
    parts = [
        f"<p><b>Selected model: {esc(best.get('arch'))}</b> ({esc(best.get('metric'))} on "
        f"{esc(best.get('test_set'))}: {esc(value)}; identity baseline {esc(identity)}).</p>",
        f"<p>{esc(best.get('reason', ''))}</p>",
    ]
    if not best.get("beats_identity", True):
        parts.append(warning(
            f"The selected model {best.get('arch')} does NOT beat the identity baseline on "
            f"{best.get('metric')}: the bone-suppressed images are no closer to the soft-tissue "
            "targets than the unchanged radiographs."))
    return parts


def _constant_columns(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], str]:
    """Columns that repeat one text on every row, and a caption naming each value once."""
    gone, said = [], []
    for column in columns:
        if column not in frame:
            continue
        values = [str(v) for v in frame[column].dropna().unique()]
        gone.append(column)
        if values:
            said.append(f"{column}: " + "; ".join(values))
    return gone, ". ".join(said)


def paired_table(paired: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``paired.csv`` to read: one CI column, method names once in the caption, notes counted."""
    frame = paired.copy()
    if {"ci_low", "ci_high"} <= set(frame.columns):
        frame["95% CI"] = [f"[{format_number(float(lo))}, {format_number(float(hi))}]"
                           if pd.notna(lo) and pd.notna(hi) else "n/a"
                           for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
    gone, caption = _constant_columns(frame, ["estimand", "test", "ci_method", "adjustment"])
    notes = frame["note"].dropna().astype(str) if "note" in frame else pd.Series([], dtype=str)
    if len(notes):
        caption += ". Notes: " + "; ".join(f"{text} ({count} rows)" for text, count
                                           in notes.value_counts(sort=False).items())
    keep = ["test_set", "metric", "contrast", "model_a", "model_b", "n", "mean_a", "mean_b",
            "difference", "95% CI", "p_value", "p_adjusted", "a_better"]
    shown = frame[[c for c in keep if c in frame.columns and c not in gone]]
    return shown.rename(columns={"p_value": "p", "p_adjusted": "p adjusted"}), caption


def bs_section(layout: Layout) -> str:
    parts = []
    summary = read_csv(layout.bs_summary)
    paired = read_csv(layout.bs_paired)
    best = read_json(layout.bs_best)
    if best is None:
        parts.append(note(f"no model selected yet ({WORKFLOW.bs_best})"))
    else:
        parts += _best_model_html(best)
    if summary is None or summary.empty:
        parts.append(note(f"no bone-suppression evaluation ({WORKFLOW.bs_summary})"))
    parts.append(MORE)  # the figures go here, the long tables below them
    if summary is not None and not summary.empty:
        parts.append(details(
            "Quality per model and test set: mean [95% CI], and which metrics beat identity",
            "<p>Mean [95% CI] over the paired test images. The <b>identity</b> row takes the "
            "input radiograph itself as the prediction: a model is only useful where it beats "
            "it. <i>beats identity on</i> comes from the paired tests below, never from the "
            "means.</p>" + table_html(bs_summary_table(summary, paired))))
    if paired is not None and not paired.empty:
        chosen = ("No model was selected (bs.pretrained): one candidate."
                  if best is not None and best.get("training_skipped") else
                  "The selection set is validation data; the test sets were not used to choose.")
        shown, caption = paired_table(paired)
        parts.append(details(
            f"Paired tests on every test set ({len(paired)} rows)",
            "<p>Per image, each model against the identity baseline and the selected model "
            "against each other model. <code>difference</code> is the estimate the test tests, "
            "with the 95% CI from inverting the same test, Holm-adjusted within each test set "
            "(<code>p adjusted</code>). <code>a_better</code> needs p adjusted &lt; 0.05 and the "
            f"CI on the better side of 0. {chosen}</p>" + table_html(shown, caption=caption)))
    parts.append(downloads([layout.bs_summary, layout.bs_paired]))
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
            row[m] = (interval(g.at[m, "value"], g.at[m, "ci_low"], g.at[m, "ci_high"])
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


def _init_note(layout: Layout) -> str:
    """Say how the classifier started: ImageNet weights change what every number below means."""
    summary = layout.cls_pretrain_summary
    if not summary.is_file():
        return note(f"classifier initialisation unknown (no {WORKFLOW.cls_pretrain_summary})")
    info = json.loads(summary.read_text(encoding="utf-8"))
    init = str(info.get("init", "unknown"))
    model = str(info.get("model_name", "?"))
    if init == "random":
        text = (f"Classifier {model} was pretrained from random initialisation: no ImageNet "
                "weights were given (cls.weights), unlike the study.")
        return warning(text) if model.startswith("vgg") else f"<p>{esc(text)}</p>"
    return f"<p>{esc(f'Classifier {model} initialised from {init}.')}</p>"


def cls_section(layout: Layout) -> str:
    metrics = read_csv(layout.cls_metrics, dtype={"fold": str})
    if metrics is None or metrics.empty:
        return note(f"no classification metrics ({WORKFLOW.cls_metrics})")
    parts = [_init_note(layout)]
    parts += [warning(w) for w in floor_warnings(metrics)]
    parts.append(MORE)
    caption = ""
    if "ci_method" in metrics:
        methods = sorted(metrics["ci_method"].dropna().astype(str).unique())
        if methods:
            caption = "Confidence intervals: " + "; ".join(methods) + "."
    parts.append(details(
        "Pooled metrics per data set, arm and model: value [95% CI]",
        "<p>Pooled out-of-fold predictions (pretraining: its validation split). <i>deep</i> is "
        "the CNN, <i>hog_floor</i> HOG features + logistic regression on the same splits.</p>"
        + table_html(cls_metrics_table(metrics, ["pooled", "val"]), caption=caption)))
    fold_ids = [f for f in metrics["fold"].astype(str).unique() if f not in ("pooled", "val")]
    per_fold = cls_metrics_table(metrics, fold_ids)
    if not per_fold.empty:
        parts.append(details("Per-fold metrics", table_html(per_fold)))
    parts.append(downloads([layout.cls_metrics]))
    return "\n".join(parts)


def comparison_table(comparison: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``comparison.csv`` to read: one CI column, each test named once in the caption."""
    frame = comparison.copy()
    frame["95% CI"] = [f"[{format_number(float(lo))}, {format_number(float(hi))}]"
                       if pd.notna(lo) and pd.notna(hi) else "n/a"
                       for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
    said = []
    if {"estimate", "test"} <= set(frame.columns):
        pairs = frame[["estimate", "test"] + (["ci_method"] if "ci_method" in frame else [])]
        for _, r in pairs.drop_duplicates().iterrows():
            ci = f", CI: {r['ci_method']}" if "ci_method" in r and pd.notna(r["ci_method"]) else ""
            said.append(f"{r['estimate']} = {r['test']}{ci}")
    if "adjustment" in frame:
        said.append("adjustment per family: " + "; ".join(
            f"{fam}: {adj}" for fam, adj in frame[["family", "adjustment"]].drop_duplicates()
            .itertuples(index=False) if str(adj) and pd.notna(adj)))
    said.append("per-row notes (exact sign-flip p, McNemar variant) are in comparison.csv")
    cols = ["dataset", "contrast", "family", "metric", "estimate", "value_arm",
            "value_reference", "difference", "95% CI", "p_value", "p_adjusted", "decision",
            "detectable_difference"]
    if "repeat" in frame and frame["repeat"].astype(str).nunique() > 1:
        cols.insert(2, "repeat")
    shown = frame[[c for c in cols if c in frame.columns]].rename(columns={
        "p_value": "p", "p_adjusted": "p adjusted", "value_arm": "arm",
        "value_reference": "reference", "detectable_difference": "detectable"})
    return shown, ". ".join(said) + "."


def stats_section(layout: Layout) -> str:
    comparison = read_csv(layout.cls_comparison)
    if comparison is None or comparison.empty:
        return note(f"no variant comparison ({WORKFLOW.cls_comparison})")
    parts = [
        "<p>Arm − reference (column <code>contrast</code>), paired on the same images and folds, "
        "with its 95% CI; rows per fine-tuning repeat are descriptive and carry no p.</p>",
    ]
    plan_line, plan_warnings = plan_status(layout.cls_dir, comparison)  # issue 22 item 8
    parts += [note(plan_line)] + [warning(w) for w in plan_warnings]
    parts += [warning(w) if "underpowered" in w else note(w) for w in verdict_lines(comparison)]
    parts.append(MORE)
    shown, caption = comparison_table(comparison)
    caption += (" p is raw; p adjusted is adjusted within the row's family (primary: Holm across "
                "TB data sets; gatekept: serial gatekeeping after the primary; equivalence: TOST "
                "p; secondary: Holm across all other rows that can reject; secondary "
                "(descriptive): rows whose smallest attainable p is not below alpha, outside "
                "Holm). detectable: the smallest difference the row's standard error detects "
                "with 80% power.")
    parts.append(details(f"Every comparison ({len(comparison)} rows)",
                         table_html(shown, caption=caption)))
    parts.append(downloads([layout.cls_comparison]))
    return "\n".join(parts)


def verdict_lines(comparison: pd.DataFrame) -> list[str]:
    """One plain line per decisive row (primary, gatekept, equivalence), 'underpowered' included."""
    lines: list[str] = []
    if "decision" not in comparison:
        return lines
    for _, r in comparison[comparison["family"].isin(["primary", "gatekept",
                                                      "equivalence"])].iterrows():
        line = (f"{r['dataset']}, {r['contrast']} ({r['family']}): {r['decision']}; ΔAUC "
                f"{format_number(float(r['difference']))} [{format_number(float(r['ci_low']))}, "
                f"{format_number(float(r['ci_high']))}], adjusted p "
                f"{format_p(r['p_adjusted'])}")
        if str(r.get("underpowered", "")).lower() == "true":
            line += (f"; underpowered: the observed CI could only detect "
                     f"{format_number(float(r['detectable_difference']))} with 80% power, more "
                     "than the claimed gain")
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------
# Relevance maps, feature space, configuration
# ---------------------------------------------------------------------------------------------
def crm_section(layout: Layout, config: Mapping[str, Any]) -> str:
    boxes = read_csv(layout.crm_boxes)
    if boxes is None:
        if not (config.get("report") or {}).get("boxes_csv"):
            return note("No expert boxes configured (report.boxes_csv): localisation is shown, "
                         "not scored.")
        return note(f"{WORKFLOW.crm_boxes} is missing: localisation not scored.")
    if boxes.empty:
        return note("No held-out image had expert boxes: localisation not scored.")
    summary = (boxes.groupby(["dataset", "variant", "method"], sort=True)["mass_inside"]
               .agg(images="count", mean_mass_inside="mean", median_mass_inside="median")
               .reset_index())
    return "\n".join([
        "<p>Share of each relevance map's mass inside the expert boxes (1 = all of it), each "
        "image scored by the fold model that did not train on it; maps without any relevance "
        "are not counted.</p>",
        table_html(summary),
        downloads([layout.crm_boxes]),
    ])


def feature_section(layout: Layout) -> str:
    table = read_csv(layout.feature_space)
    if table is None or table.empty:
        return note(f"no cluster scores ({WORKFLOW.feature_space}): "
                     "the fold models were not available")
    mean = (table.groupby(["dataset", "variant"], sort=True)[["silhouette", "davies_bouldin"]]
            .mean().reset_index().assign(fold="mean of folds"))
    cols = ["dataset", "variant", "fold", "silhouette", "davies_bouldin"]
    shown = pd.concat([table.astype({"fold": str}), mean], ignore_index=True)[cols]
    return "\n".join([
        "<p>Pooled deep features of each fold's held-out images, scored against the labels: "
        "silhouette (higher = classes better separated) and Davies-Bouldin (lower = more "
        "compact clusters).</p>",
        MORE,
        details(f"Cluster scores per TB set, arm and fold ({len(shown)} rows)", table_html(shown)),
        downloads([layout.feature_space]),
    ])


def _plain(obj: Any) -> Any:
    """Config as plain YAML types (snakemake's config may hold its own mapping classes)."""
    return json.loads(json.dumps(obj, default=str))


def config_section(config: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    text = yaml.safe_dump(_plain(dict(config)), sort_keys=False, default_flow_style=False)
    soft = pd.DataFrame({"package": list(versions), "version": [str(v) for v in versions.values()]})
    return "\n".join([details("Configuration of this run (YAML)", f"<pre>{esc(text)}</pre>"),
                      "<h3>Software</h3>", table_html(soft)])


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers (no timestamps, no host names)."""
    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
