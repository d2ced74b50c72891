"""The report's first screen (issue 23): verdicts worded by the declared rule, the warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrbs.core.atomic import write_csv
from cxrbs.core.layout import Layout
from cxrbs.report.html_summary import (
    bs_quality_html,
    pretrained_overlap,
    primary_verdict,
    warnings_list,
)


def _row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {"arm": "bone_suppressed", "value_arm": 0.85,
                              "value_reference": 0.82, "difference": 0.03, "ci_low": 0.01,
                              "ci_high": 0.05, "p_adjusted": 0.004,
                              "decision": "bone_suppressed better", "detectable_difference": 0.02,
                              "underpowered": False}
    row.update(kw)
    return row


def test_primary_verdict_follows_the_declared_rule() -> None:
    assert primary_verdict(_row(), 0.03).startswith(
        "The bone-suppressed images raised the AUC by +0.03 (95% CI [+0.01, +0.05]; adjusted p "
        "0.004 < 0.05")
    worse = primary_verdict(_row(difference=-0.03, ci_low=-0.05, ci_high=-0.01,
                                 decision="bone_suppressed worse"), 0.03)
    assert worse.startswith("The bone-suppressed images lowered the AUC by -0.03")
    under = primary_verdict(_row(ci_low=-0.02, ci_high=0.08, p_adjusted=0.28,
                                 decision="no difference shown (underpowered)",
                                 detectable_difference=0.046, underpowered=True), 0.03)
    assert under.startswith("No evidence either way (ΔAUC +0.03, 95% CI [-0.02, +0.08], adjusted "
                            "p 0.28)")
    assert "underpowered: smallest detectable difference ≈ 0.046 at this size" in under
    narrow = primary_verdict(_row(difference=0.001, ci_low=-0.01, ci_high=0.012, p_adjusted=0.7,
                                  decision="no difference shown"), 0.03)
    assert narrow.endswith("a change as large as the claimed 0.03 is ruled out.")
    # significant p but the CI touches 0: the rule says no
    assert primary_verdict(_row(ci_low=-0.001, p_adjusted=0.04,
                                decision="no difference shown (CI includes 0)"),
                           0.03).startswith("No evidence either way")
    ceiling = primary_verdict(_row(value_arm=1.0, value_reference=1.0, difference=0.0,
                                   ci_low=0.0, ci_high=0.0, p_adjusted=1.0,
                                   decision="no difference shown"), 0.03)
    assert "ceiling" in ceiling and ceiling.startswith("No evidence either way")
    assert "undefined" in primary_verdict(_row(p_adjusted=np.nan, decision="undefined"), 0.03)


def test_bs_quality_says_whether_the_paired_test_supports_the_gain() -> None:
    summary = pd.DataFrame([
        {"arch": a, "test_set": t, "metric": m, "mean": v, "ci_low": v - 1, "ci_high": v + 1,
         "sd": 1.0, "n": n}
        for t, n in (("validation", 10), ("big", 40), ("tiny", 5))
        for a, m, v in (("good", "psnr", 35.0), ("identity", "psnr", 30.0),
                        ("good", "ms_ssim", 0.99), ("identity", "ms_ssim", 0.98))])
    paired = pd.DataFrame([
        {"test_set": t, "metric": m, "model_a": "good", "model_b": "identity", "n": n,
         "difference": d, "ci_low": lo, "ci_high": hi, "p_adjusted": p, "a_better": ok}
        for t, n, lo, hi, p, ok in (("big", 40, 4.0, 6.0, 0.001, True),
                                    ("tiny", 5, np.nan, np.nan, 1.0, False))
        for m, d in (("psnr", 5.0), ("ms_ssim", 0.01))])
    best = {"arch": "good", "metric": "psnr", "selection_set": "validation"}
    html = bs_quality_html(summary, paired, best)
    assert "Selected model good (best PSNR on the validation pairs" in html
    assert "+5 dB on big, +5 dB on tiny" in html
    assert "supports the gain on 1 of 2 test sets" in html and ">validation<" not in html
    assert ">yes (PSNR, MS-SSIM)<" in html
    assert "no: PSNR adjusted p 1, 5 pairs: too few for a CI" in html
    assert ">35 / 30<" in html and ">+5 [+4, +6]<" in html


def test_pretrained_model_overlapping_a_test_set_is_a_warning(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "results")
    card = tmp_path / "bundled" / "m1.md"
    card.parent.mkdir(parents=True)
    card.write_text("card")
    pd.DataFrame({"name": ["a.png", "b.png", "c.png"], "patient_id": ["P1", "P2", "P3"],
                  "split": ["train", "val", "test"]}).to_csv(card.with_suffix(".split.csv"),
                                                              index=False)
    write_csv(layout.manifest("jsrt"), pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4"]}))
    write_csv(layout.manifest("other"), pd.DataFrame({"patient_id": ["Q1"]}))
    config = {"datasets": {"jsrt": {"role": "bs_train"}, "other": {"role": "bs_test"}},
              "cls": {"variants": ["baseline", "bone_suppressed", "control"], "repeats": 5}}
    best = {"training_skipped": True, "pretrained": "m1", "arch": "pretrained",
            "pretrained_model": {"card": str(card)}}
    lines = pretrained_overlap(layout, config, best)
    assert lines == ["Pretrained model m1 was trained or validated on 2 patients of jsrt: they "
                     "are removed from heldout_test and validation before scoring, so the scores "
                     "there are held-out results."]  # issue 22 item 5
    config["datasets"]["jsrt"]["role"] = "bs_test"  # a test set it saw: still a warning
    assert pretrained_overlap(layout, config, best) == [
        "Pretrained model m1 was trained on 2 patients of jsrt: its scores on jsrt are not "
        "held-out results."]
    config["datasets"]["jsrt"]["role"] = "bs_train"
    card.with_suffix(".split.csv").unlink()
    assert "unknown" in pretrained_overlap(layout, config, best)[0]
    assert pretrained_overlap(layout, config, {"arch": "unet"}) == []
    # with a control arm and repeats, and no tiny sample, those warnings are absent
    warns = warnings_list(layout, config, metrics=None, summary=None, comparison=None,
                          best={"arch": "unet"}, floor=[])
    assert warns == []
    config["cls"] = {"variants": ["baseline", "bone_suppressed"], "repeats": 1}
    warns = warnings_list(layout, config, metrics=None, summary=None,
                          comparison=pd.DataFrame({"x": [1]}), best={"arch": "unet",
                                                                     "beats_identity": False},
                          floor=["shenzhen, baseline: the deep model's AUC ..."])
    assert [w.split(" ")[0] for w in warns] == ["No", "One", "The", "The"]
    assert "shenzhen, baseline" in warns[-1]
