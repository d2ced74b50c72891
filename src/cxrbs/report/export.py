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

import numpy as np
import pandas as pd

from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout

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


def _delong_auc_ci(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from cxrbs.cls.stats import delong_auc_ci, delong_auc_variance

    auc, _ = delong_auc_variance(y, p)
    lo, hi = delong_auc_ci(y, p)
    return auc, lo, hi


def headline(predictions: pd.DataFrame) -> pd.DataFrame:
    """Pooled out-of-fold AUC of the seed-averaged deep predictions, per collection and arm."""
    deep = predictions[predictions["model"] == "deep"] if "model" in predictions else predictions
    mean = deep.groupby(["dataset", "variant", "image"], as_index=False).agg(
        label=("label", "first"), probability=("probability", "mean"),
        repeats=("repeat", "nunique"))
    rows = []
    for (dataset, variant), g in mean.groupby(["dataset", "variant"]):
        y, p = g["label"].to_numpy(int), g["probability"].to_numpy(float)
        auc, lo, hi = _delong_auc_ci(y, p)
        rows.append({"dataset": dataset, "arm": variant, "n": len(g), "n_positive": int(y.sum()),
                     "repeats": int(g["repeats"].max()), "auc": auc, "ci_low": lo, "ci_high": hi,
                     "ci_method": "DeLong 95% CI of the pooled out-of-fold AUC (seed-averaged)"})
    return pd.DataFrame(rows)


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "\u2212")


def _interval(lo: float, hi: float) -> str:
    return f"[{_signed(lo)}, {_signed(hi)}]"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


#: The model name of the HOG + logistic-regression floor in the prediction files.
FLOOR = "hog_floor"

#: Row labels of the headline table, by arm.
ARM_LABELS = {"baseline": "baseline (original images)", "bone_suppressed": "bone-suppressed",
              "control": "sham control (the image's own change, high band phase-randomised)"}


def headline_markdown(head: pd.DataFrame, comparison: pd.DataFrame,
                      predictions: pd.DataFrame | None = None,
                      margin: float | None = None) -> str:
    """The README's headline table: per collection (columns, largest first) each arm's pooled
    out-of-fold AUC with its CI (``head``), the HOG floor on the originals (``predictions``), and
    the primary contrast, its p (adjusted), the smallest detectable difference, the verdict and
    the control's equivalence test as the run's ``comparison`` states them."""
    sets = head.groupby("dataset")["n"].max().sort_values(ascending=False)
    cols = [f"{d.capitalize()} ({n})" for d, n in sets.items()]
    lines = ["| pooled out-of-fold AUC [95% CI, DeLong] | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for arm in [a for a in ARM_LABELS if a in set(head["arm"])]:
        cells = []
        for d in sets.index:
            r = head[(head["dataset"] == d) & (head["arm"] == arm)]
            cells.append(f"{r['auc'].iloc[0]:.3f} [{r['ci_low'].iloc[0]:.3f}, "
                         f"{r['ci_high'].iloc[0]:.3f}]" if len(r) else "")
        row(ARM_LABELS[arm], cells)
    if predictions is not None and "model" in predictions and (predictions["model"] == FLOOR).any():
        floor = headline(predictions[predictions["model"] == FLOOR].assign(model="deep"))
        cells = []
        for d in sets.index:
            r = floor[(floor["dataset"] == d) & (floor["arm"] == "baseline")]
            cells.append(f"{r['auc'].iloc[0]:.3f}" if len(r) else "")
        row("HOG + logistic-regression floor (original images)", cells)
    if not {"dataset", "metric", "estimate", "family"} <= set(comparison.columns):
        return "\n".join(lines) + "\n"  # a comparison without tests: the AUCs alone
    pooled = comparison[(comparison["metric"] == "auc")
                        & comparison["estimate"].astype(str).str.startswith("pooled out-of-fold, mean")]

    def pick(family: str, d: str) -> pd.Series | None:
        r = pooled[(pooled["family"] == family) & (pooled["dataset"] == d)]
        return r.iloc[0] if len(r) else None

    primary = [pick("primary", d) for d in sets.index]
    if any(r is not None for r in primary):
        row(f"**primary: {primary[0]['contrast'] if primary[0] is not None else ''}** [95% CI]",
            [f"{_signed(r['difference'])} {_interval(r['ci_low'], r['ci_high'])}"
             if r is not None else "" for r in primary])
        adjust = str(next(r for r in primary if r is not None)["adjustment"]).split(" (")[0]
        row(f"p (adjusted: {adjust})", [f"{_p(r['p_value'])} ({_p(r['p_adjusted'])})"
                                        if r is not None else "" for r in primary])
        row("smallest difference detectable (80% power)",
            [f"{r['detectable_difference']:.3f}" if r is not None else "" for r in primary])
        row("verdict by the declared rule",
            [f"**{r['decision']}**" if r is not None else "" for r in primary])
    equivalence = [pick("equivalence", d) for d in sets.index]
    if any(r is not None for r in equivalence):
        within = f", equivalence ±{margin:g}" if margin is not None else ", equivalence"
        contrast = next(r for r in equivalence if r is not None)["contrast"]
        row(f"{contrast} [90% CI]{within}",
            [f"{_signed(r['difference'])} {_interval(r['ci_low'], r['ci_high'])}: {r['decision']}"
             if r is not None else "" for r in equivalence])
    return "\n".join(lines) + "\n"


def _num(x: float, digits: int, sign: str = "") -> str:
    return f"{x:{sign}.{digits}f}".replace("-", "\u2212")


def measures_markdown(arm_tests: pd.DataFrame, silhouette: pd.DataFrame | None = None) -> str:
    """The README's table of what the paper only describes (issue 26, item 4), per collection:
    the bone each arm's images still carry inside the lungs (the bone-suppression model's own
    estimate, RMS, with the share of the originals'), the share of CRM relevance inside the
    lungs, and the classes' silhouette in the classifier's features, each arm difference with its
    CI and p as ``arm_tests.csv`` / ``silhouette.csv`` state them."""
    sets = arm_tests.groupby("dataset")["n"].max().sort_values(ascending=False)
    lines = ["| measured, per collection (secondary) | " + " | ".join(
        f"{d.capitalize()}" for d in sets.index) + " |", "|---|" + "---|" * len(sets)]

    def test(d: str, measure: str, comparison: str) -> pd.Series | None:
        r = arm_tests[(arm_tests["dataset"] == d) & (arm_tests["measure"] == measure)
                      & (arm_tests["comparison"] == comparison)]
        return r.iloc[0] if len(r) else None

    def arms(d: str, measure: str) -> dict[str, float]:
        out = {}
        for comparison in ("bone_suppressed − baseline", "control − baseline"):
            r = test(d, measure, comparison)
            if r is not None:
                out["baseline"] = float(r["mean_b"])
                out[comparison.split(" ")[0]] = float(r["mean_a"])
        return out

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("images with a lung mask", [str(int(arm_tests[arm_tests["dataset"] == d]["n"].max()))
                                    for d in sets.index])
    for measure, label, digits in (
            ("bone_rms", "bone left inside the lungs (RMS of the model's bone estimate)", 4),
            ("relevance_in_lungs", "share of CRM relevance inside the lungs", 3)):
        cells = []
        for d in sets.index:
            a = arms(d, measure)
            parts = [_num(a[k], digits) + (f" ({a[k] / a['baseline']:.0%})"
                                           if measure == "bone_rms" and k != "baseline" else "")
                     for k in ("baseline", "bone_suppressed", "control") if k in a]
            cells.append(" / ".join(parts))
        row(f"{label}: baseline / suppressed / control", cells)
        for comparison in ("bone_suppressed − baseline", "control − baseline"):
            found = [test(d, measure, comparison) for d in sets.index]
            if all(r is None for r in found):
                continue
            row(f"&nbsp;&nbsp;{comparison}, Hodges–Lehmann [95% CI], Holm p",
                [f"{_num(r['difference'], digits, '+')} [{_num(r['ci_low'], digits, '+')}, "
                 f"{_num(r['ci_high'], digits, '+')}], p {_p(r['p_holm'])}" if r is not None else ""
                 for r in found])
    if silhouette is not None and len(silhouette):
        cells, diffs = [], []
        for d in sets.index:
            g = silhouette[silhouette["dataset"] == d].set_index("arm")
            parts = []
            for k in ("baseline", "bone_suppressed", "control"):
                if k in g.index:
                    r = g.loc[k]
                    parts.append(f"{r['silhouette']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
            cells.append(" / ".join(parts))
            r = g.loc["bone_suppressed"] if "bone_suppressed" in g.index else None
            diffs.append(f"{_signed(r['difference_vs_baseline'])} "
                         f"{_interval(r['difference_ci_low'], r['difference_ci_high'])}"
                         if r is not None else "")
        row("silhouette of the two classes in the features [95% CI]: baseline / suppressed / "
            "control", cells)
        row("&nbsp;&nbsp;bone_suppressed − baseline [95% bootstrap CI]", diffs)
    return "\n".join(lines) + "\n"


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
