"""The report's first screen: what the run found, in words, from its own results.

Three parts, each one short table or list: the warnings that change how to read everything below,
the primary endpoint per TB data set with a verdict worded by the declared rule (Holm-adjusted
p < 0.05 and the CI clear of 0; otherwise "no evidence either way", with "underpowered" where the
smallest detectable difference exceeds the claimed gain), and the selected bone-suppression
model's gain over identity per test set with whether the paired test supports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.cls.plan import plan_status
from cxrbs.core.layout import Layout
from cxrbs.report.html_blocks import (
    esc,
    format_number,
    format_p,
    image_html,
    read_csv,
    read_json,
    signed,
    signed_interval,
    table_html,
)

#: Below these sizes the first screen warns of tiny samples.
TINY_TB_IMAGES = 100
TINY_BS_PAIRS = 20
ALPHA = 0.05
ARM_WORDS = {"baseline": "original", "bone_suppressed": "bone-suppressed",
             "control": "sham control"}
SELECTION_SET = "validation"


def _cfg(config: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _true(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value).strip().lower() in ("true", "1", "yes")


# ---------------------------------------------------------------------------------------------
# the primary endpoint
# ---------------------------------------------------------------------------------------------
def primary_verdict(r: Mapping[str, Any], claimed: float) -> str:
    """One sentence per primary row, worded by the declared decision rule."""
    d, lo, hi = _f(r.get("difference")), _f(r.get("ci_low")), _f(r.get("ci_high"))
    p = _f(r.get("p_adjusted"))
    a, b = _f(r.get("value_arm")), _f(r.get("value_reference"))
    decision = str(r.get("decision", ""))
    arm = ARM_WORDS.get(str(r.get("arm", "bone_suppressed")), str(r.get("arm")))
    ci = f"95% CI [{signed(lo)}, {signed(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "no CI"
    if decision.endswith(" better") or decision.endswith(" worse"):
        verb = "raised" if d > 0 else "lowered"
        return (f"The {arm} images {verb} the AUC by {signed(d)} ({ci}; adjusted p "
                f"{format_p(p)} < {ALPHA:g}, CI clear of 0).")
    if a >= 0.999 and b >= 0.999:
        return (f"No evidence either way: both arms reach AUC {format_number(a)} (a ceiling): no "
                "difference can show on this set.")
    if decision == "undefined" or not np.isfinite(p):
        return "No evidence either way: the test is undefined here (see the Statistics table)."
    text = f"No evidence either way (ΔAUC {signed(d)}, {ci}, adjusted p {format_p(p)})"
    mde = _f(r.get("detectable_difference"))
    if _true(r.get("underpowered")) and np.isfinite(mde):
        return (text + f"; underpowered: smallest detectable difference ≈ {format_number(mde)} "
                f"at this size, above the claimed gain of {claimed:g}.")
    if np.isfinite(lo) and np.isfinite(hi) and max(abs(lo), abs(hi)) < claimed:
        return text + f": a change as large as the claimed {claimed:g} is ruled out."
    return text + "."


def _pooled_n(metrics: pd.DataFrame | None, dataset: str) -> Any:
    if metrics is None or "n" not in metrics:
        return "n/a"
    rows = metrics[(metrics["dataset"].astype(str) == dataset)
                   & (metrics["fold"].astype(str) == "pooled")]
    return int(rows["n"].max()) if not rows.empty else "n/a"


def primary_html(comparison: pd.DataFrame | None, metrics: pd.DataFrame | None,
                 config: Mapping[str, Any]) -> str:
    if comparison is None or comparison.empty or "family" not in comparison:
        return '<p class="note">no variant comparison yet (results/cls/comparison.csv)</p>'
    from cxrbs.cls.compare import CLAIMED_EFFECT

    claimed = float(_cfg(config, "cls.claimed_effect", CLAIMED_EFFECT))
    primary = comparison[comparison["family"].astype(str) == "primary"]
    rows, sentences = [], []
    for _, r in primary.iterrows():
        dataset = str(r["dataset"])
        rows.append({
            "TB data set": dataset, "images": _pooled_n(metrics, dataset),
            "AUC original": _f(r.get("value_reference")),
            "AUC bone-suppressed": _f(r.get("value_arm")),
            "ΔAUC [95% CI]": signed_interval(_f(r["difference"]), _f(r["ci_low"]),
                                             _f(r["ci_high"])),
            "adjusted p": _f(r.get("p_adjusted")),
        })
        sentences.append(f"<li><b>{esc(dataset)}</b>: "
                         f'<span class="verdict">{esc(primary_verdict(r, claimed))}</span></li>')
    test = str(primary["test"].iloc[0]) if "test" in primary and len(primary) else "DeLong"
    adjust = (str(primary["adjustment"].iloc[0]) if "adjustment" in primary and len(primary)
              else "Holm")
    parts = [table_html(pd.DataFrame(rows).rename(columns={"adjusted p": "p adjusted"}),
                        caption=f"{test}; p {adjust}. Rule: an effect needs adjusted p < "
                        f"{ALPHA:g} and the CI clear of 0."),
             f"<ul>{''.join(sentences)}</ul>"]
    others = comparison[comparison["family"].astype(str).isin(["gatekept", "equivalence"])]
    if not others.empty:
        items = []
        for _, r in others.iterrows():
            what = ("removing bones vs a sham change" if r["family"] == "gatekept"
                    else "sham change vs original (equivalence)")
            delta = signed_interval(_f(r["difference"]), _f(r["ci_low"]), _f(r["ci_high"]))
            items.append(f"<li>{esc(r['dataset'])}, {esc(what)}: {esc(r.get('decision', ''))} "
                         f"(ΔAUC {esc(delta)}, adjusted p {esc(format_p(r.get('p_adjusted')))})"
                         "</li>")
        parts.append("<p>Is it the bones? Control-arm contrasts:</p><ul>" + "".join(items)
                     + "</ul>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# bone-suppression quality
# ---------------------------------------------------------------------------------------------
def _selected(best: Mapping[str, Any]) -> str | None:
    arch = best.get("arch") or ("pretrained" if best.get("training_skipped") else None)
    return str(arch) if arch else None


def _mean(summary: pd.DataFrame, arch: str, test: str, metric: str) -> float:
    rows = summary[(summary["arch"].astype(str) == arch) & (summary["test_set"].astype(str) == test)
                   & (summary["metric"] == metric)]
    return float(rows["mean"].iloc[0]) if not rows.empty else math.nan


def _gain_row(paired: pd.DataFrame | None, arch: str, test: str, metric: str) -> dict[str, Any]:
    if paired is None or paired.empty:
        return {}
    rows = paired[(paired["model_a"].astype(str) == arch)
                  & (paired["model_b"].astype(str) == "identity")
                  & (paired["test_set"].astype(str) == test) & (paired["metric"] == metric)]
    return dict(rows.iloc[0]) if not rows.empty else {}


def _support(gains: Mapping[str, Mapping[str, Any]]) -> str:
    """'yes (PSNR, MS-SSIM)' or 'no: ...' with the reason per metric."""
    names = {"psnr": "PSNR", "ms_ssim": "MS-SSIM"}
    yes = [names[m] for m, g in gains.items() if g and _true(g.get("a_better"))]
    if len(yes) == len(gains) and yes:
        return "yes (" + ", ".join(yes) + ")"
    reasons = []
    for m, g in gains.items():
        if not g or _true(g.get("a_better")):
            continue
        why = f"adjusted p {format_p(g.get('p_adjusted'))}"
        if not (np.isfinite(_f(g.get("ci_low"))) and np.isfinite(_f(g.get("ci_high")))):
            why += f", {int(_f(g.get('n')))} pairs: too few for a CI" if np.isfinite(
                _f(g.get("n"))) else ", no CI"
        reasons.append(f"{names[m]} {why}")
    head = ("only " + ", ".join(yes) + "; " if yes else "no: ")
    return head + "; ".join(reasons)


def bs_quality_html(summary: pd.DataFrame | None, paired: pd.DataFrame | None,
                    best: Mapping[str, Any] | None) -> str:
    if summary is None or summary.empty or not best:
        return '<p class="note">no bone-suppression evaluation or selection yet</p>'
    arch = _selected(best)
    if arch is None:
        return '<p class="note">no bone-suppression model selected</p>'
    tests = sorted(t for t in summary["test_set"].astype(str).unique() if t != SELECTION_SET)
    rows, supported, gains_text = [], 0, []
    for test in tests:
        gains = {m: _gain_row(paired, arch, test, m) for m in ("psnr", "ms_ssim")}
        n = summary[(summary["test_set"].astype(str) == test)]["n"].max()
        row: dict[str, Any] = {"test set": test, "pairs": int(n) if np.isfinite(n) else "n/a"}
        for m, label in (("psnr", "PSNR, dB"), ("ms_ssim", "MS-SSIM")):
            g = gains[m]
            row[f"{label}: model / identity"] = (
                f"{format_number(_mean(summary, arch, test, m))} / "
                f"{format_number(_mean(summary, 'identity', test, m))}")
            row[f"{label} gain [95% CI]"] = (signed_interval(_f(g.get("difference")),
                                                            _f(g.get("ci_low")),
                                                            _f(g.get("ci_high")))
                                             if g else "no paired test")
        row["paired test supports it?"] = _support(gains)
        supported += row["paired test supports it?"].startswith("yes")
        if gains["psnr"]:
            gains_text.append(f"{signed(_f(gains['psnr'].get('difference')))} dB on {test}")
        rows.append(row)
    if best.get("training_skipped"):
        who = (f"Pretrained model {best.get('pretrained')} (the only candidate: nothing was "
               "selected)")
    else:
        metric = str(best.get("metric", "")).upper().replace("MS_SSIM", "MS-SSIM")
        who = (f"Selected model {arch} (best {metric} on the "
               f"{best.get('selection_set', SELECTION_SET)} pairs; no test set used to choose)")
    sentence = (f"{who}: PSNR gain over leaving the image unchanged "
                + (", ".join(gains_text) if gains_text else "not tested")
                + f"; the paired test supports the gain on {supported} of {len(tests)} test "
                "set" + ("s" if len(tests) != 1 else "") + ".")
    caption = ("Gain: Hodges–Lehmann median of the per-image differences, CI from inverting the "
               "Wilcoxon signed-rank test, Holm within each test set; supported = adjusted p < "
               f"{ALPHA:g} and the CI clear of 0. Model / identity: means.")
    out = [f'<p class="verdict">{esc(sentence)}</p>',
           table_html(pd.DataFrame(rows), caption=caption) if rows else ""]
    if not best.get("beats_identity", True):
        out.append(f'<p class="verdict">The selected model does NOT beat identity on '
                   f"{esc(best.get('metric'))}.</p>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# warnings
# ---------------------------------------------------------------------------------------------
def _patients(layout: Layout, name: str) -> set[str]:
    manifest = read_csv(layout.manifest(name), dtype={"patient_id": str})
    if manifest is None or "patient_id" not in manifest:
        return set()
    return set(manifest["patient_id"].dropna().astype(str))


def pretrained_overlap(layout: Layout, config: Mapping[str, Any],
                       best: Mapping[str, Any]) -> list[str]:
    """A pretrained model whose training patients are in a data set it is scored on."""
    if not best.get("training_skipped"):
        return []
    name = best.get("pretrained")
    card = (best.get("pretrained_model") or {}).get("card")
    split = Path(str(card)).with_suffix(".split.csv") if card else None
    if split is None or not split.is_file():
        return [f"Pretrained model {name}: its training patients are not listed (no split file "
                "beside its model card), so whether they overlap a test set is unknown."]
    table = pd.read_csv(split, dtype={"patient_id": str})
    trained = set(table.loc[table["split"].astype(str).isin(["train", "val"]),
                            "patient_id"].astype(str))
    out = []
    for ds, spec in (config.get("datasets") or {}).items():
        role = (spec or {}).get("role")
        if role not in ("bs_train", "bs_test"):
            continue
        shared = trained & _patients(layout, str(ds))
        if shared and role == "bs_train":
            # evaluate_bs left them out of heldout_test / validation (item 5 of issue 22)
            out.append(f"Pretrained model {name} was trained or validated on {len(shared)} "
                       f"patients of {ds}: {_removed(layout, str(ds), trained)}, so the "
                       "scores there are held-out results.")
        elif shared:
            out.append(f"Pretrained model {name} was trained on {len(shared)} patients of {ds}: "
                       f"its scores on {ds} are not held-out results.")
    return out


def _removed(layout: Layout, dataset: str, trained: set[str]) -> str:
    """'K of M heldout_test patients (and ...) were removed before scoring', from split.csv."""
    split = read_csv(layout.bs_dir / "data" / "split.csv", dtype={"patient_id": str})
    if split is None or not {"patient_id", "split"} <= set(split.columns):
        return "they are removed from heldout_test and validation before scoring"
    if "dataset" in split:
        split = split[split["dataset"].astype(str) == dataset]
    parts = []
    for part, label in (("test", "heldout_test"), ("val", "validation")):
        ids = set(split.loc[split["split"].astype(str) == part, "patient_id"].dropna().astype(str))
        if ids:
            parts.append(f"{len(ids & trained)} of {len(ids)} {label} patients")
    if not parts:
        return "none of them is in heldout_test or validation"
    return " and ".join(parts) + " were removed before scoring"


def warnings_list(layout: Layout, config: Mapping[str, Any], *, metrics: pd.DataFrame | None,
                  summary: pd.DataFrame | None, comparison: pd.DataFrame | None,
                  best: Mapping[str, Any] | None, floor: Sequence[str]) -> list[str]:
    """The caveats that change how to read the results below, one line each."""
    out: list[str] = []
    tiny = []
    tb_sets = sorted(str(n) for n, s in (config.get("datasets") or {}).items()
                     if (s or {}).get("role") == "tb")
    for ds in tb_sets:
        n = _pooled_n(metrics, ds)
        if isinstance(n, int) and n < TINY_TB_IMAGES:
            tiny.append(f"{ds} {n} images")
    if summary is not None and not summary.empty:
        for test, g in summary.groupby(summary["test_set"].astype(str), sort=True):
            n = int(g["n"].max())
            if n < TINY_BS_PAIRS:
                tiny.append(f"{test} {n} pairs")
    if tiny:
        out.append("Tiny samples (" + ", ".join(tiny) + "): confidence intervals are wide and "
                   "the tests have little power; a non-significant result here is no evidence "
                   "of no effect.")
    variants = list(_cfg(config, "cls.variants", ["baseline", "bone_suppressed"]) or [])
    if "control" not in variants:
        out.append("No control (sham) arm was run: a difference between the arms cannot be "
                   "attributed to removing bones rather than to altering the images at all.")
    if int(_cfg(config, "cls.repeats", 1) or 1) <= 1 and comparison is not None:
        out.append("One fine-tuning repeat: the primary p treats the trained classifiers as fixed "
                   "(seed-to-seed training noise not estimated), so it is optimistic.")
    if comparison is not None:  # the analysis plan changed after the comparison / first fixed
        out += plan_status(layout.cls_dir, comparison)[1]
    if best:
        out += pretrained_overlap(layout, config, best)
        if not best.get("beats_identity", True):
            out.append(f"The bone-suppression model {_selected(best)} does not beat leaving the "
                       "image unchanged: the 'bone-suppressed' arm is not bone-suppressed.")
    init = read_json(layout.cls_pretrain_summary) or {}
    if str(init.get("init")) == "random" and str(init.get("model_name", "")).startswith("vgg"):
        out.append(f"Classifier {init.get('model_name')} was pretrained from random "
                   "initialisation (no ImageNet weights), unlike the study.")
    if floor:
        out.append("The HOG + logistic-regression floor reaches the deep model's AUC on "
                   + "; ".join(f.split(":")[0] for f in floor)
                   + ": those AUCs say little about bone suppression.")
    return out


# ---------------------------------------------------------------------------------------------
# the block
# ---------------------------------------------------------------------------------------------
def summary_html(layout: Layout, config: Mapping[str, Any], figures: Sequence[str | Path],
                 floor: Sequence[str]) -> str:
    """The first screen: warnings, the primary endpoint, bone-suppression quality, a figure."""
    metrics = read_csv(layout.cls_metrics, dtype={"fold": str})
    comparison = read_csv(layout.cls_comparison)
    summary = read_csv(layout.bs_summary)
    paired = read_csv(layout.bs_paired)
    best = read_json(layout.bs_best)
    warns = warnings_list(layout, config, metrics=metrics, summary=summary,
                          comparison=comparison, best=best, floor=floor)
    parts = ['<section id="summary" class="glance"><h2>At a glance</h2>']
    if warns:
        parts.append('<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in warns)
                     + "</ul>")
    parts += ["<h3>Did bone suppression change TB classification? Primary endpoint: ΔAUC</h3>",
              primary_html(comparison, metrics, config),
              "<h3>Does the bone-suppression model beat leaving the image unchanged?</h3>",
              bs_quality_html(summary, paired, best)]
    parts += [image_html(p).replace("<figure>", '<figure class="small">', 1) for p in figures]
    parts.append("</section>")
    return "\n".join(parts)
