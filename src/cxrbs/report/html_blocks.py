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



def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def warning(text: str) -> str:
    return f'<div class="warning">{esc(text)}</div>'


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


def interval(value: float, low: float, high: float) -> str:
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
