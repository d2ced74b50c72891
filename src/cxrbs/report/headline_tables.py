"""The README's tables of a kept run, written from its files alone (issue 26, item 5).

Why: the README's answer must be the run's, not a transcription. :func:`headline_markdown`
writes the headline table from :func:`headline` (pooled AUCs recomputed from the predictions), the run's
``comparison.csv`` and the frozen analysis plan; :func:`measures_markdown` writes the table of
what the paper only describes from ``arm_tests.csv`` and ``silhouette.csv``. The export keeps
both as ``headline.md``/``measures.md`` and a test finds them in the README verbatim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrbs.report.html_blocks import format_p

__all__ = ["ARM_LABELS", "FLOOR", "headline", "headline_markdown", "measures_markdown"]


def _delong_auc_ci(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from cxrbs.cls.stats import delong_auc_ci, delong_auc_variance

    auc, _ = delong_auc_variance(y, p)
    lo, hi = delong_auc_ci(y, p)
    return auc, lo, hi


def headline(predictions: pd.DataFrame, model: str = "deep") -> pd.DataFrame:
    """Pooled out-of-fold AUC of the seed-averaged predictions of ``model`` (the deep model, or
    :data:`FLOOR`), per collection and arm."""
    deep = predictions[predictions["model"] == model] if "model" in predictions else predictions
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


def _num(x: float, digits: int = 3, sign: str = "") -> str:
    return f"{x:{sign}.{digits}f}".replace("-", "\u2212")


def _signed(x: float) -> str:
    return _num(x, 3, "+")


def _interval(lo: float, hi: float) -> str:
    return f"[{_signed(lo)}, {_signed(hi)}]"


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
        floor = headline(predictions, model=FLOOR)
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
        row(f"p (adjusted: {adjust})", [f"{format_p(r['p_value'])} ({format_p(r['p_adjusted'])})"
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
                 f"{_num(r['ci_high'], digits, '+')}], p {format_p(r['p_holm'])}" if r is not None else ""
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
