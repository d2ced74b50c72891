"""Report blocks of the arm measures (``results/explain/arm_*.csv``, issue 26 item 4): bone left
and relevance inside the lung masks per arm, and the classes' silhouette per arm with its CI.

They answer in numbers what the paper shows in pictures: does suppression remove bone (and the
control arm keep it), does the classifier look more into the lungs, are the classes more compact.
"""

from __future__ import annotations

import pandas as pd

from cxrbs.core.layout import WORKFLOW, Layout
from cxrbs.explain.arm_measures import MEASURES
from cxrbs.report.html_blocks import downloads, interval, note, read_csv, signed_interval, table_html



def _test_rows(tests: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "TB set": tests["dataset"],
        "measure": tests["measure"].map(MEASURES).fillna(tests["measure"]),
        "comparison": tests["comparison"],
        "images": tests["n"],
        "mean (first)": tests["mean_a"],
        "mean (second)": tests["mean_b"],
        "difference [95% CI]": [signed_interval(d, lo, hi) for d, lo, hi in
                                zip(tests["difference"], tests["ci_low"], tests["ci_high"],
                                    strict=True)],
        "p (Holm)": tests["p_holm"],
    })


def lung_measures_html(layout: Layout) -> str:
    """Bone left and relevance inside the lungs, per arm, with paired tests (or why not)."""
    tests = read_csv(layout.arm_tests)
    per_image = read_csv(layout.arm_measures)
    if tests is None or per_image is None:
        return note(f"no lung measures ({WORKFLOW.arm_tests}): they need the baseline and another "
                    "arm (cls.variants).")
    masked = per_image[per_image["has_mask"].astype(bool)]
    if tests.empty or masked.empty:
        return note("No TB set has lung masks (datasets.<tb>.lung_masks): bone left and "
                    "relevance inside the lungs were not measured.")
    counts = (masked[masked["arm"] == "baseline"].groupby("dataset")["image"].count())
    totals = per_image[per_image["arm"] == "baseline"].groupby("dataset")["image"].count()
    covered = ", ".join(f"{d} {counts.get(d, 0)} of {totals[d]}" for d in totals.index)
    lungs = masked[masked["arm"] == "baseline"].groupby("dataset")["lung_fraction"].mean()
    share = ", ".join(f"{d} {v:.2f}" for d, v in lungs.items())
    return "\n".join([
        "<h3>Measured per arm inside the lung fields</h3>",
        f"<p>Images with a lung mask: {covered}. <b>Bone left</b> is what the selected "
        "bone-suppression model itself still finds to remove in each arm's image (its output "
        "subtracted from its input, RMS inside the lungs): suppressed images should carry much "
        "less than the originals, control images about as much. <b>Share of the CRM inside the "
        f"lungs</b> is to be read beside the lungs' share of the image ({share}): what a map "
        "spread evenly would score. Each image is scored by its arm's out-of-fold model of the "
        "first seed. Secondary, descriptive family (not the primary endpoint).</p>",
        table_html(_test_rows(tests), caption=str(tests["test"].iloc[0])),
        # the per-image table (one row per image and arm) stays beside the report, not inside it
        downloads([layout.arm_tests]),
        f"<p>Per image: <code>{WORKFLOW.arm_measures}</code>.</p>",
    ])


def silhouette_html(layout: Layout) -> str:
    """Mean per-image silhouette per arm with its bootstrap CI and the difference to baseline."""
    table = read_csv(layout.silhouette)
    if table is None or table.empty:
        return ""
    rows = pd.DataFrame({
        "TB set": table["dataset"], "arm": table["arm"], "images": table["n"],
        "silhouette [95% CI]": [interval(v, lo, hi) for v, lo, hi in
                                zip(table["silhouette"], table["ci_low"], table["ci_high"],
                                    strict=True)],
        "minus baseline [95% CI]": [
            "" if pd.isna(d) else signed_interval(d, lo, hi) for d, lo, hi in
            zip(table["difference_vs_baseline"], table["difference_ci_low"],
                table["difference_ci_high"], strict=True)],
    })
    n_boot = int(table["n_boot"].iloc[0])
    return "\n".join([
        "<p>Compactness as a number: each held-out image's silhouette in the features of the "
        "fold model that did not train on it (higher = its class sits apart from the other), "
        "averaged per arm.</p>",
        table_html(rows, caption=f"percentile bootstrap over images, {n_boot} resamples within "
                                 "each label, the same resamples for every arm (descriptive)"),
        downloads([layout.silhouette]),
    ])
