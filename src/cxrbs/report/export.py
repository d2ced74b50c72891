"""Keep a finished run's answer in the repository: its report, its small tables and every
out-of-fold prediction, so that the README's numbers can be recomputed (issue 26).

    python -m cxrbs.report.export --workdir . --out docs/results

``headline.csv`` is computed here from ``predictions.csv`` alone (pooled out-of-fold AUC of the
seed-averaged deep-model predictions per collection and arm, with DeLong's 95% CI), beside the
run's own ``comparison.csv``; ``headline.md`` is the README's headline table, written from those
two files and the frozen analysis plan (:func:`headline_markdown`). A test recomputes both from the
committed files and finds the table in the README verbatim, so no number there is typed by hand.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
from pathlib import Path

import pandas as pd

from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.report.headline_tables import headline, headline_markdown, measures_markdown

__all__ = ["export_run", "gather_predictions", "headline", "headline_markdown", "measures_markdown"]


def _tables(layout: Layout) -> list[Path]:
    """Small files copied as they are, when present."""
    return [layout.cls_comparison, layout.cls_metrics, layout.cls_analysis_plan, layout.bs_summary,
            layout.bs_best, layout.arm_tests, layout.silhouette, layout.report]


MAX_BYTES = 5 * 2**20


def _repeat(path: Path) -> int:
    m = re.fullmatch(r"repeat(\d+)", path.parent.parent.name)
    return int(m.group(1)) if m else 0


def gather_predictions(results: Path) -> pd.DataFrame:
    """Every out-of-fold prediction of the run: one row per image, arm, model, repeat."""
    cls_dir = Layout(Path(results)).cls_dir
    files = sorted(cls_dir.glob("*/*/fold*/predictions.csv")) + sorted(
        cls_dir.glob("*/*/repeat*/fold*/predictions.csv"))
    files = [f for f in files if "pretrain" not in f.parts]
    if not files:
        raise CxrbsError(f"no fine-tuning predictions under {results}/cls: run the workflow first")
    frames = [pd.read_csv(f, dtype={"patient": str, "image": str}).assign(repeat=_repeat(f))
              for f in files]
    out = pd.concat(frames, ignore_index=True)
    keep = [c for c in ("dataset", "variant", "model", "repeat", "fold", "image", "patient",
                        "label", "probability") if c in out]
    return out[keep].sort_values(keep[:6]).reset_index(drop=True)


def _plan_margin(plan: Path) -> float | None:
    import json

    try:
        return float(json.loads(plan.read_text(encoding="utf-8"))["values"]["equivalence_margin"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_PNG_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


#: The report's page is at most 1150 CSS px wide: wider figures are scaled down to it.
MAX_FIGURE_WIDTH = 1150


def _smaller_figure(data: bytes) -> tuple[str, bytes]:
    """(MIME type, bytes) of a figure re-encoded for keeping: scaled to the page width, then a
    256-colour palette PNG (plots), or JPEG where that is less than half the size (radiograph
    panels and relevance maps, whose smooth grey levels a palette cannot hold cheaply)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    if rgb.width > MAX_FIGURE_WIDTH:
        height = round(rgb.height * MAX_FIGURE_WIDTH / rgb.width)
        rgb = rgb.resize((MAX_FIGURE_WIDTH, height), Image.Resampling.LANCZOS)
    png, jpeg = io.BytesIO(), io.BytesIO()
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(png, format="PNG", optimize=True)
    rgb.save(jpeg, format="JPEG", quality=80, optimize=True)
    if jpeg.tell() < png.tell() / 2:
        return "image/jpeg", jpeg.getvalue()
    if png.tell() < len(data):
        return "image/png", png.getvalue()
    return "image/png", data


def slim_report(html: str) -> str:
    """The report with every embedded PNG re-encoded by :func:`_smaller_figure` (tables, text and
    the embedded CSV downloads unchanged), so a kept report stays small in the repository."""
    def swap(match: re.Match[str]) -> str:
        mime, data = _smaller_figure(base64.b64decode(match.group(1)))
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")

    return _PNG_URI.sub(swap, html)


def export_run(workdir: Path, out: Path) -> list[Path]:
    """Copy the run's report (figures re-encoded smaller) and small tables into ``out`` with
    predictions.csv and headline.csv; all or nothing: over the size limit, nothing is written."""
    workdir = Path(workdir)
    layout = Layout(workdir / "results")
    contents: dict[str, bytes] = {}
    for src in _tables(layout):
        if not src.is_file():
            continue
        if src.suffix == ".json":  # paths of the run's machine, kept relative to its folder
            text = src.read_text(encoding="utf-8")
            for root in {str(workdir.resolve()), str(workdir)}:
                text = text.replace(f"{root}/", "")
            contents[src.name] = text.encode("utf-8")
        elif src.suffix == ".html":
            contents[src.name] = slim_report(src.read_text(encoding="utf-8")).encode("utf-8")
        else:
            contents[src.name] = src.read_bytes()
    preds = gather_predictions(layout.root)
    contents["predictions.csv"] = preds.to_csv(index=False).encode("utf-8")
    head = headline(preds)
    contents["headline.csv"] = head.to_csv(index=False).encode("utf-8")
    if layout.cls_comparison.is_file():
        table = headline_markdown(head, pd.read_csv(layout.cls_comparison), preds,
                                  _plan_margin(layout.cls_analysis_plan))
        contents["headline.md"] = table.encode("utf-8")
    if layout.arm_tests.is_file():
        sil = pd.read_csv(layout.silhouette) if layout.silhouette.is_file() else None
        contents["measures.md"] = measures_markdown(pd.read_csv(layout.arm_tests), sil).encode()
    total = sum(len(v) for v in contents.values())
    if total > MAX_BYTES:
        raise CxrbsError(f"the exported files would take {total / 2**20:.1f} MB, over the 5 MB kept "
                         f"in the repository; nothing was written to {out}: shrink the report's "
                         "figures or leave the report out")
    out = atomic.ensure_dir(out)
    written = []
    for name, data in contents.items():
        with atomic.atomic_path(out / name) as tmp:
            Path(tmp).write_bytes(data)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("."), help="the run's folder")
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args(argv)
    try:
        written = export_run(args.workdir, args.out)
    except CxrbsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
