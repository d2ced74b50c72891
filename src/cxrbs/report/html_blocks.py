"""Building blocks of the HTML report: CSS, captions, escaped notes, tables, inlined PNGs.

Everything here is independent of the results tree; :mod:`cxrbs.report.html_sections` turns the
stage tables into sections and :mod:`cxrbs.report.html` assembles the document.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.core.errors import CxrbsError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TABLE_CLASS = "cxrbs-table"
#: Where a section's figures go: after its text, before its long (collapsed) tables.
MORE = "<!-- figures -->"
SECTION_TITLES = {
    "data": "Data",
    "methods": "Statistical methods",
    "bone_suppression": "Bone suppression",
    "classification": "Classification",
    "statistics": "Statistics",
    "relevance_maps": "Relevance maps",
    "feature_space": "Feature space",
    "configuration": "Configuration and software",
}
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
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e0e0e0;
box-sizing:border-box}
figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.82em}
nav ul{columns:2;font-size:.92em}details{margin:.5em 0}summary{cursor:pointer;color:#0b57d0}
table.cxrbs-table{max-width:100%}table.cxrbs-table td,table.cxrbs-table th{overflow-wrap:break-word}
.glance table.cxrbs-table td:last-child{text-align:left}
.tablewrap{max-width:100%;overflow-x:auto}
.glance{border:1px solid #c9d3e0;background:#f7f9fc;border-radius:6px;padding:.2em 1.1em .6em;
margin:.6em 0 1em}.glance h2{margin-top:.5em;border:none}.glance h3{margin:.7em 0 .2em;
font-size:1.02em}.glance p{margin:.25em 0}.glance ul.warnings{margin:.3em 0;padding-left:1.2em;
font-size:.9em;color:#7a2e00}.glance table.cxrbs-table{margin:.3em 0 .4em}
.verdict{font-weight:600}.caption{font-size:.85em;color:#555;margin:.2em 0 .6em}
.downloads{font-size:.9em}.downloads a{margin-right:1em}
figure.small img{max-width:720px}
"""

#: Caption per figure-name prefix (the rest of the name is the data set or test set): one line
#: that says what to look for.
CAPTIONS = {
    "summary": "Left: the primary endpoint, ΔAUC (bone-suppressed − original) per TB data set; "
    "right: the selected model's PSNR gain over leaving the image unchanged. A CI clear of the "
    "dashed zero line is an effect; red marks adjusted p < 0.05.",
    "bs_forest": "Every model minus identity, per metric and test set (Hodges–Lehmann median, "
    "95% CI): look for rows clear of the zero line on the 'better' side; red = paired test "
    "supports it (adjusted p < 0.05 and CI clear of 0), open marker = too few pairs for a CI.",
    "bs_scatter": "One dot per test image, the selected model's PSNR against the unchanged "
    "image's: dots above the diagonal are images the model improved.",
    "bs_metrics": "Mean with 95% CI per model; the identity baseline (prediction = input) is the "
    "hatched grey bar and the dashed line: a useful model clears it.",
    "bs_training_curves": "Loss per epoch: validation loss should fall and flatten, not rise.",
    "bs_examples": "Best, median and worst test image by PSNR: the error column should be darker "
    "than the bone layer beside it (same colour scale).",
    "cls_pretrain_curves": "Classifier pretraining: validation AUC should rise above 0.5.",
    "cls_roc": "ROC curves, thin per fold and thick pooled: compare the two panels, and both with "
    "the dashed HOG floor.",
    "cls_confusion": "Pooled out-of-fold confusion matrices at the configured threshold.",
    "cls_metrics": "Pooled metrics with 95% CIs: solid deep model vs hatched HOG floor, blue "
    "original vs red bone-suppressed.",
    "cls_comparison": "Arm − reference per classification metric (95% CI, adjusted p at the "
    "right): red rows are differences the declared test supports; grey rows are descriptive.",
    "crm": "Relevance maps of held-out TB cases, original and bone-suppressed side by side: look "
    "for relevance on the lungs rather than ribs, borders or text.",
    "tsne": "t-SNE of the deep features of the first fold's held-out images: separated colours "
    "mean the features separate the classes.",
}


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def warning(text: str) -> str:
    return f'<div class="warning">{esc(text)}</div>'


def format_number(value: Any) -> Any:
    """Floats rounded to what a report needs (NaN -> 'n/a'); anything else unchanged.

    4 significant digits, and never more than 4 decimals (MAE 0.004567 -> 0.0046): enough for
    any metric whose CI is wider than 1e-4, and short enough to read.
    """
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if v == 0 or 1e-4 <= abs(v) < 1e4:
            text = f"{v:.4g}"
            if "e" in text or len(text.split(".")[-1]) > 4 and "." in text:
                text = f"{v:.4f}".rstrip("0").rstrip(".")
            return "0" if text in ("-0", "") else text
        return f"{v:.3g}"
    return value


def format_p(value: Any) -> str:
    """A p-value to 2 significant digits ('n/a' when undefined, '< 0.0001' below that)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def is_p_column(name: str) -> bool:
    return str(name) in ("p", "p_value", "p_adjusted") or str(name).startswith("p ")


def table_html(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A DataFrame as an HTML table with the report's CSS class: p-value columns to 2 significant
    digits, other floats by :func:`format_number`; ``caption`` (methods, named once) below it."""
    shown = frame.copy()
    for column in shown.columns:
        fmt = format_p if is_p_column(column) else format_number
        shown[column] = shown[column].map(fmt).astype(object)
    table = shown.to_html(index=False, classes=TABLE_CLASS, border=0, na_rep="n/a", escape=True)
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return f'<div class="tablewrap">{table}</div>{cap}'


def details(summary: str, inner: str, *, open_: bool = False) -> str:
    """A collapsed block: one click shows ``inner`` (long tables, raw text)."""
    return (f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>\n{inner}"
            "\n</details>")


def csv_link(path: Path, label: str | None = None) -> str:
    """The CSV itself embedded as a data: URI download link (the report stays one file)."""
    path = Path(path)
    if not path.is_file():
        return ""
    uri = "data:text/csv;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    name = esc(path.name if label is None else label)
    return f'<a download="{esc(path.name)}" href="{uri}">download {name}</a>'


def downloads(paths: list[Path]) -> str:
    links = [link for link in (csv_link(p) for p in paths) if link]
    return f'<p class="downloads">{" ".join(links)}</p>' if links else ""


def interval(value: float, low: float, high: float) -> str:
    """'value [low, high]' rounded by :func:`format_number`; the CI left out where undefined."""
    text = str(format_number(float(value)))
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{format_number(float(low))}, {format_number(float(high))}]"
    return text


def signed(value: float) -> str:
    """A difference with its sign: '+0.024', '-1.3', 'n/a'."""
    text = str(format_number(float(value)))
    return text if text == "n/a" or text.startswith("-") or text == "0" else "+" + text


def signed_interval(value: float, low: float, high: float) -> str:
    text = signed(value)
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{signed(low)}, {signed(high)}]"
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
        return note(f"figure {path} could not be read ({exc.strerror or exc})")
    if not data.startswith(PNG_SIGNATURE):
        return note(f"figure {path} is not a PNG file; left out")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cap = esc(caption or figure_caption(path.stem))
    return f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame | None:
    return pd.read_csv(path, **kwargs) if path.is_file() else None


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CxrbsError(
            f"{path} is not valid JSON ({exc}); delete it and rerun the workflow"
        ) from exc
