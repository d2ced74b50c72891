"""The one self-contained HTML results report: figures inlined as base64 PNGs, CSS inline.

A researcher can mail the single file. It holds no timestamp, so a rerun on the same results
gives the same bytes. Missing optional parts (no boxes, a stage not run) become a one-line note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrbs.core.atomic import write_text
from cxrbs.core.layout import Layout
from cxrbs.report.html_blocks import (
    CSS,
    MORE,
    SECTION_TITLES,
    details,
    esc,
    format_number,
    image_html,
    note,
    read_csv,
)
from cxrbs.report.html_arms import lung_measures_html, silhouette_html
from cxrbs.report.methods import statistical_methods_html
from cxrbs.report.html_sections import (
    bs_section,
    bs_summary_table,
    cls_section,
    config_section,
    crm_section,
    data_section,
    feature_section,
    floor_warnings,
    is_synthetic,
    software_versions,
    sources_of,
    stats_section,
)
from cxrbs.report.html_summary import summary_html

__all__ = ["build_report", "bs_summary_table", "format_number", "image_html", "is_synthetic",
           "software_versions"]


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------
#: Figures shown first in their section (by file-name prefix); the rest follow, collapsed.
LEAD_FIGURES = {
    "bone_suppression": ("bs_forest", "bs_scatter", "bs_examples"),
    "classification": ("cls_metrics",),
    "statistics": ("cls_comparison",),
    "relevance_maps": ("crm",),
    "feature_space": ("tsne",),
}


#: Figures of a lead prefix that still go behind the click (pretraining is not a result).
NOT_LEAD = ("cls_metrics_pretrain",)


def _rank(key: str, path: str | Path) -> tuple[int, int]:
    stem = Path(path).stem
    if stem in NOT_LEAD:
        return (1, 0)
    lead = LEAD_FIGURES.get(key, ())
    for i, prefix in enumerate(lead):
        if stem == prefix or stem.startswith(prefix + "_"):
            return (0, i)
    return (1, 0)


#: Short names of the figures behind the click, for the <summary> line.
KINDS = {"bs_metrics": "mean quality per model", "bs_training_curves": "training curves",
         "cls_pretrain_curves": "pretraining curves", "cls_metrics": "pretraining metrics",
         "cls_roc": "ROC curves", "cls_confusion": "confusion matrices"}


def _kind(path: str | Path) -> str:
    stem = Path(path).stem
    for prefix, name in sorted(KINDS.items(), key=lambda kv: -len(kv[0])):
        if stem == prefix or stem.startswith(prefix + "_"):
            return name
    return stem.replace("_", " ")


def _section_extras(key: str, figures: Mapping[str, Sequence[str | Path]],
                    notes: Mapping[str, Sequence[str]]) -> str:
    """A section's notes and figures: the lead figures open, the others one click away."""
    parts = [note(n) for n in notes.get(key, [])]
    paths = sorted(figures.get(key, []), key=lambda p: _rank(key, p))
    lead = [image_html(p) for p in paths if _rank(key, p)[0] == 0]
    rest = [image_html(p) for p in paths if _rank(key, p)[0] == 1]
    parts += lead
    if rest:
        kinds = ", ".join(dict.fromkeys(_kind(p) for p in paths if _rank(key, p)[0] == 1))
        parts.append(details(f"{len(rest)} more figure" + ("s" if len(rest) > 1 else "")
                             + f": {kinds}", "\n".join(rest), open_=not lead))
    if key in ("relevance_maps", "feature_space") and not paths:
        parts.append(note("no figures for this section"))
    return "\n".join(parts)


def _place(body: str, extras: str) -> str:
    """The figures after the section's text and before its long tables (at ``MORE``)."""
    if MORE in body:
        head, tail = body.split(MORE, 1)
        return f"{head}\n{extras}\n{tail}"
    return f"{body}\n{extras}"


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
    layout = Layout(Path(results_dir))
    resources = (Path(resources_dir) if resources_dir is not None
                 else layout.workflow_dir / "resources")
    sources = sources_of(config, resources)
    bodies = {
        "data": data_section(layout, config, sources),
        "methods": statistical_methods_html(config),  # declared before any result is shown
        "bone_suppression": bs_section(layout),
        "classification": cls_section(layout),
        "statistics": stats_section(layout),
        "relevance_maps": crm_section(layout, config) + lung_measures_html(layout),
        "feature_space": feature_section(layout) + silhouette_html(layout),
        "configuration": config_section(config, versions),
    }
    sections = [
        f'<section id="{key}"><h2>{esc(title)}</h2>\n'
        f"{_place(bodies[key], _section_extras(key, figures, notes or {}))}</section>"
        for key, title in SECTION_TITLES.items()
    ]
    metrics = read_csv(layout.cls_metrics, dtype={"fold": str})
    floor = floor_warnings(metrics) if metrics is not None and not metrics.empty else []
    glance = summary_html(layout, config, figures.get("summary", []), floor)
    links = "".join(f'<li><a href="#{k}">{esc(t)}</a></li>' for k, t in SECTION_TITLES.items())
    doc = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>cxr-bone-suppression results</title>", f"<style>{CSS}</style></head><body>",
        "<h1>Chest X-ray bone suppression and TB classification: results</h1>",
        _banner(is_synthetic(config, sources)), glance,
        "<p>Reproduction of Rajaraman et al., <i>Diagnostics</i> 2021, by the "
        "cxr-bone-suppression workflow. Every table below is collapsed one click away, and "
        "each results CSV can be downloaded from its section.</p>",
        f"<nav><ul>{links}</ul></nav>", *sections,
        "</body></html>",
    ])  # fmt: skip
    write_text(out_html, doc + "\n")
    return Path(out_html)
