"""A run's answer kept in the repository (issue 26): predictions gathered from every fold and
repeat, the headline recomputed from them alone; and the committed docs/results/ (when present)
recomputes to the numbers it lists."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrbs.core.errors import CxrbsError
from cxrbs.report.export import (
    _plan_margin,
    export_run,
    gather_predictions,
    headline,
    headline_markdown,
    measures_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "docs" / "results"


def _fake_run(root: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    for variant in ("baseline", "bone_suppressed"):
        for repeat in (0, 1):
            for fold in (0, 1):
                part = np.arange(40)[fold::2]
                sub = "" if repeat == 0 else f"repeat{repeat}/"
                d = root / "results/cls/shenzhen" / variant / f"{sub}fold{fold}"
                d.mkdir(parents=True)
                rows = []
                for model in ("deep", "hog"):
                    p = np.clip(0.3 * y[part] + rng.uniform(0, 0.8, part.size), 0, 1)
                    rows.append(pd.DataFrame({
                        "image": [f"img{i}" for i in part], "patient": [str(i) for i in part],
                        "label": y[part], "probability": p, "fold": fold, "variant": variant,
                        "dataset": "shenzhen", "model": model}))
                pd.concat(rows).to_csv(d / "predictions.csv", index=False)
    (root / "results/cls/comparison.csv").write_text("dataset\nshenzhen\n")


def test_headline_is_recomputed_from_the_predictions(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    files = export_run(tmp_path, tmp_path / "out")
    assert {f.name for f in files} == {"comparison.csv", "predictions.csv", "headline.csv",
                                       "headline.md"}  # no arm_tests.csv: no measures.md
    preds = pd.read_csv(tmp_path / "out/predictions.csv")
    assert len(preds) == 2 * 2 * 2 * 40 and set(preds["repeat"]) == {0, 1}
    head = pd.read_csv(tmp_path / "out/headline.csv")
    deep = preds[preds["model"] == "deep"]
    for r in head.itertuples():
        g = deep[deep["variant"] == r.arm].groupby("image").agg(
            label=("label", "first"), probability=("probability", "mean"))
        assert r.auc == pytest.approx(roc_auc_score(g["label"], g["probability"]))
        assert r.ci_low < r.auc < r.ci_high and r.repeats == 2
    with pytest.raises(CxrbsError, match="no fine-tuning predictions"):
        gather_predictions(tmp_path / "nothing")


@pytest.mark.skipif(not (KEPT / "predictions.csv").is_file(), reason="no kept run in docs/results")
def test_kept_run_recomputes_to_its_headline_and_the_readme() -> None:
    preds = pd.read_csv(KEPT / "predictions.csv", dtype={"image": str, "patient": str})
    kept = pd.read_csv(KEPT / "headline.csv")
    again = headline(preds)
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), again.reset_index(drop=True),
                                  check_dtype=False)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for r in again.itertuples():
        assert f"{r.auc:.3f}" in readme, (r.dataset, r.arm, r.auc)
    # the README's headline table is the one written from the kept files, verbatim
    table = headline_markdown(again, pd.read_csv(KEPT / "comparison.csv"), preds,
                              _plan_margin(KEPT / "analysis_plan.json"))
    assert (KEPT / "headline.md").read_text(encoding="utf-8") == table
    block = readme.split("<!-- headline:begin -->\n", 1)[1].split("<!-- headline:end -->", 1)[0]
    assert block == table
    measures = measures_markdown(pd.read_csv(KEPT / "arm_tests.csv"),
                                 pd.read_csv(KEPT / "silhouette.csv"))
    assert (KEPT / "measures.md").read_text(encoding="utf-8") == measures
    block = readme.split("<!-- measures:begin -->\n", 1)[1].split("<!-- measures:end -->", 1)[0]
    assert block == measures


def test_measures_table_states_each_arm_and_its_tests() -> None:
    rows = []
    for measure, base, sup, ctl in (("bone_rms", 0.04, 0.02, 0.039), ("relevance_in_lungs", 0.5,
                                                                     0.52, 0.58)):
        for comparison, a, b in (("bone_suppressed − baseline", sup, base),
                                 ("control − baseline", ctl, base),
                                 ("bone_suppressed − control", sup, ctl)):
            rows.append({"dataset": "shenzhen", "measure": measure, "comparison": comparison,
                         "n": 566, "mean_a": a, "mean_b": b, "difference": a - b,
                         "ci_low": a - b - 0.001, "ci_high": a - b + 0.001, "p_value": 0.01,
                         "p_holm": 0.04})
    sil = pd.DataFrame([
        {"dataset": "shenzhen", "arm": "baseline", "silhouette": 0.3, "ci_low": 0.27,
         "ci_high": 0.33},
        {"dataset": "shenzhen", "arm": "bone_suppressed", "silhouette": 0.296, "ci_low": 0.27,
         "ci_high": 0.32, "difference_vs_baseline": -0.004, "difference_ci_low": -0.014,
         "difference_ci_high": 0.007}])
    lines = measures_markdown(pd.DataFrame(rows), sil).splitlines()
    assert "| images with a lung mask | 566 |" in lines
    assert ("| bone left inside the lungs (RMS of the model's bone estimate): baseline / "
            "suppressed / control | 0.0400 / 0.0200 (50%) / 0.0390 (98%) |") in lines
    assert ("| &nbsp;&nbsp;bone_suppressed − baseline, Hodges–Lehmann [95% CI], Holm p | "
            "−0.0200 [−0.0210, −0.0190], p 0.04 |") in lines
    assert ("| share of CRM relevance inside the lungs: baseline / suppressed / control | "
            "0.500 / 0.520 / 0.580 |") in lines
    assert ("| &nbsp;&nbsp;control − baseline, Hodges–Lehmann [95% CI], Holm p | "
            "+0.080 [+0.079, +0.081], p 0.04 |") in lines
    assert lines[-1] == ("| &nbsp;&nbsp;bone_suppressed − baseline [95% bootstrap CI] | "
                         "−0.004 [−0.014, +0.007] |")
    assert len(measures_markdown(pd.DataFrame(rows)).splitlines()) == len(lines) - 2


def _comparison(primary: float, p: float) -> pd.DataFrame:
    pooled = "pooled out-of-fold, mean of 2 repeats"
    return pd.DataFrame([
        {"dataset": "shenzhen", "contrast": "bone_suppressed − baseline", "family": "primary",
         "metric": "auc", "estimate": pooled, "difference": primary, "ci_low": primary - 0.01,
         "ci_high": primary + 0.01, "p_value": p, "p_adjusted": min(1.0, 2 * p),
         "adjustment": "Holm across TB data sets (primary family)",
         "detectable_difference": 0.0142, "decision": "bone_suppressed better"},
        {"dataset": "shenzhen", "contrast": "bone_suppressed − baseline", "family": "secondary",
         "metric": "auc", "estimate": "mean of 4 folds", "difference": 9.0, "ci_low": 8.0,
         "ci_high": 10.0, "p_value": 0.5, "p_adjusted": 1.0, "adjustment": "Holm",
         "detectable_difference": None, "decision": "no difference shown"},
        {"dataset": "shenzhen", "contrast": "control − baseline", "family": "equivalence",
         "metric": "auc", "estimate": pooled, "difference": -0.004, "ci_low": -0.012,
         "ci_high": 0.004, "p_value": 0.01, "p_adjusted": 0.01, "adjustment": "none",
         "detectable_difference": None, "decision": "equivalent within the margin"}])


def test_headline_table_states_the_run_and_its_declared_tests(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    preds = gather_predictions(tmp_path / "results")
    head = headline(preds)
    table = headline_markdown(head, _comparison(-0.0123, 0.004), preds, 0.02)
    lines = table.splitlines()
    assert lines[0] == "| pooled out-of-fold AUC [95% CI, DeLong] | Shenzhen (40) |"
    base = head[head["arm"] == "baseline"].iloc[0]
    assert (f"| baseline (original images) | {base.auc:.3f} [{base.ci_low:.3f}, "
            f"{base.ci_high:.3f}] |") in lines
    hog = preds[(preds["model"] == "hog") & (preds["variant"] == "baseline")]
    assert not any(line.startswith("| HOG") for line in lines)  # "hog" is not the floor's name
    # the floor's rows are found by their name in a real run (export.FLOOR)
    named = pd.concat([preds, hog.assign(model="hog_floor")])
    with_floor = headline_markdown(head, _comparison(-0.0123, 0.004), named).splitlines()
    g = hog.groupby("image").agg(label=("label", "first"), probability=("probability", "mean"))
    auc = roc_auc_score(g["label"], g["probability"])
    assert f"| HOG + logistic-regression floor (original images) | {auc:.3f} |" in with_floor
    assert "| **primary: bone_suppressed − baseline** [95% CI] | −0.012 [−0.022, −0.002] |" in lines
    assert "| p (adjusted: Holm across TB data sets) | 0.004 (0.008) |" in lines
    assert "| smallest difference detectable (80% power) | 0.014 |" in lines
    assert "| verdict by the declared rule | **bone_suppressed better** |" in lines
    assert ("| control − baseline [90% CI], equivalence ±0.02 | −0.004 [−0.012, +0.004]: "
            "equivalent within the margin |") in lines
    assert "9.000" not in table  # the fold-mean secondary row is not the headline
    assert headline_markdown(head, pd.DataFrame({"dataset": ["shenzhen"]})).count("\n") == 4
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"values": {"equivalence_margin": 0.03}}))
    assert _plan_margin(plan) == 0.03 and _plan_margin(tmp_path / "none.json") is None


def test_exported_json_keeps_no_path_of_the_run_machine(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    best = tmp_path / "results/bs/best.json"
    best.parent.mkdir(parents=True, exist_ok=True)
    card = tmp_path / "src/cxrbs/bundled/m.md"
    best.write_text(json.dumps({"arch": "pretrained", "pretrained_model": {"card": str(card)}}))
    files = export_run(tmp_path, tmp_path / "out")
    assert tmp_path / "out/best.json" in files
    kept = json.loads((tmp_path / "out/best.json").read_text())
    assert kept["pretrained_model"]["card"] == "src/cxrbs/bundled/m.md"


def test_report_figures_are_reencoded_smaller_and_the_limit_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from cxrbs.report import export

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot(np.arange(50), np.sin(np.arange(50) / 5.0), color="tab:orange")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = buf.getvalue()
    html = f'<p>x</p><img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    slim = export.slim_report(html)
    assert slim.startswith("<p>x</p><img src=") and len(slim) < len(html)
    data = base64.b64decode(slim.split("base64,")[1].split('"')[0])
    with Image.open(io.BytesIO(data)) as small, Image.open(io.BytesIO(png)) as big:
        assert small.size == big.size
    _fake_run(tmp_path)
    monkeypatch.setattr(export, "MAX_BYTES", 100)
    with pytest.raises(CxrbsError, match="nothing was written"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
