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
from cxrbs.report.html_blocks import CSS, SECTION_TITLES, esc, format_number, image_html, note
from cxrbs.report.methods import statistical_methods_html
from cxrbs.report.html_sections import (
    bs_section,
    bs_summary_table,
    cls_section,
    config_section,
    crm_section,
    data_section,
    feature_section,
    is_synthetic,
    software_versions,
    sources_of,
    stats_section,
)

__all__ = ["build_report", "bs_summary_table", "format_number", "image_html", "is_synthetic",
           "software_versions"]


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------
def _section_extras(key: str, figures: Mapping[str, Sequence[str | Path]],
                    notes: Mapping[str, Sequence[str]]) -> str:
    parts = [note(n) for n in notes.get(key, [])]
    parts += [image_html(p) for p in figures.get(key, [])]
    if key in ("relevance_maps", "feature_space") and not parts:
        parts.append(note("no figures for this section"))
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
        "relevance_maps": crm_section(layout, config),
        "feature_space": feature_section(layout),
        "configuration": config_section(config, versions),
    }
    sections = [
        f'<section id="{key}"><h2>{esc(title)}</h2>\n{bodies[key]}\n'
        f"{_section_extras(key, figures, notes or {})}</section>"
        for key, title in SECTION_TITLES.items()
    ]
    links = "".join(f'<li><a href="#{k}">{esc(t)}</a></li>' for k, t in SECTION_TITLES.items())
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
