"""Issue 22 items 6 (rest), 8 and 9: a secondary row that cannot reject leaves the Holm family;
the frozen analysis plan (hash + timestamp, rewritten only when its values change, flagged in the
report); metrics.csv and comparison.csv say which predictions they score."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbs.cls.compare import FAMILY_DESCRIPTIVE, adjust_families, compare_variants
from cxrbs.cls.pipeline import evaluate
from cxrbs.cls.plan import PLAN_COLUMN, plan_hash, plan_status, read_plan, write_plan
from cxrbs.cls.stats import holm, mcnemar_test
from test_stats import _predictions, _repeated

VALUES = {"primary_endpoint": "pooled AUC", "folds": 4, "repeats": 1, "seed": 0,
          "variants": ["baseline", "bone_suppressed"], "threshold": 0.5,
          "equivalence_margin": 0.02, "claimed_effect": 0.03, "seed_variance": "full"}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2026, 2, 1, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- item 8: the plan
def test_plan_keeps_its_timestamp_until_a_value_changes(tmp_path: Path) -> None:
    path = tmp_path / "cls" / "analysis_plan.json"
    first = write_plan(path, VALUES, now=T0)
    assert first["sha256"] == plan_hash(VALUES) and first["fixed_utc"] == "2026-01-01T00:00:00Z"
    assert plan_hash(dict(reversed(list(VALUES.items())))) == first["sha256"]  # order-free
    path.unlink()  # Snakemake deletes an output before its job reruns (e.g. --forcerun)
    again = write_plan(path, VALUES, now=T1)
    assert again["fixed_utc"] == "2026-01-01T00:00:00Z" and not again["earlier_plans"]
    line, warnings = plan_status(path.parent, pd.DataFrame({PLAN_COLUMN: [first["sha256"]]}))
    assert first["sha256"][:16] in line and "2026-01-01T00:00:00Z" in line and warnings == []

    changed = write_plan(path, {**VALUES, "folds": 5}, now=T1)
    assert changed["sha256"] != first["sha256"] and changed["fixed_utc"] == "2026-02-01T00:00:00Z"
    assert [p["sha256"] for p in changed["earlier_plans"]] == [first["sha256"]]
    assert read_plan(path) == json.loads(path.read_text())
    # the comparison computed under the first plan: flagged, and so is the later change
    _, warnings = plan_status(path.parent, pd.DataFrame({PLAN_COLUMN: [first["sha256"]]}))
    assert len(warnings) == 2
    assert "computed under analysis plan " + first["sha256"][:16] in warnings[0]
    assert "changed after it was first fixed (2026-01-01T00:00:00Z" in warnings[1]
    assert plan_status(tmp_path / "nowhere")[0].startswith("No analysis plan")


def test_workflow_writes_the_plan_for_the_comparison(tmp_path: Path) -> None:
    from test_workflow import DEMO, output, planned_jobs, snakemake

    result = snakemake("-n", "--configfile", str(DEMO), workdir=tmp_path / "run")
    assert result.returncode == 0, output(result)[-5000:]
    assert ("analysis_plan", "") in planned_jobs(result) or "analysis_plan" in {
        rule for rule, _ in planned_jobs(result)}
    rules = (Path(__file__).resolve().parents[1] / "workflow/rules/classification.smk").read_text()
    block = rules.split("rule analysis_plan:")[1].split("\nrule ")[0]
    # the params block: its 8-space lines up to the next directive (snakefmt orders directives)
    params = re.search(r"^    params:\n((?:        .*\n)+)", block, re.M)
    assert params is not None
    assert [p.split("=")[0].strip() for p in params.group(1).splitlines()] == list(VALUES)
    for rule in ("pretrain_cls", "finetune_cls", "finetune_cls_repeat"):
        body = rules.split(f"rule {rule}:")[1].split("\nrule ")[0]
        # a new plan retrains nothing; an ancient() input would hide params changes downstream
        assert "analysis_plan.json" not in body
    assert 'plan="results/cls/analysis_plan.json"' in rules.split("rule compare_cls:")[1]


# ----------------------------------------------------------------------------- item 6: the family
def test_a_row_that_cannot_reject_leaves_the_holm_family() -> None:
    assert mcnemar_test([1] * 5 + [0] * 5, [1] * 5 + [0] * 5, [0] * 3 + [1] * 2 + [0] * 5)[
        "min_p"] == 2 * 0.5**3  # 3 discordant pairs: 0.25 at best
    table = pd.DataFrame({
        "family": ["primary", "secondary", "secondary", "secondary", "secondary"],
        "p_value": [0.01, 0.01, 0.02, 0.25, np.nan],
        "min_attainable_p": [np.nan, 0.0, 0.0, 0.0625, 0.0],
        "ci_low": [0.1] * 5, "ci_high": [0.2] * 5, "difference": [0.15] * 5,
        "arm": ["bone_suppressed"] * 5})
    out = adjust_families(table)
    assert list(out["family"]) == ["primary", "secondary", "secondary", FAMILY_DESCRIPTIVE,
                                   FAMILY_DESCRIPTIVE]
    np.testing.assert_allclose(out["p_adjusted"][1:3], holm(np.array([0.01, 0.02])))
    assert out["p_adjusted"][3:].isna().all()
    assert set(out["decision"][3:]) == {"descriptive: this test cannot reject here"}
    assert out["adjustment"][3].startswith("none: outside the Holm family")


# ----------------------------------------------------------------------------- item 9: which preds
def test_metrics_and_comparison_say_which_predictions(tmp_path: Path) -> None:
    preds = _predictions()
    one = compare_variants(preds)
    assert set(one["predictions"]) == {"repeat 0"}
    many = compare_variants(_repeated(3))
    decisive = many[many["family"] != "per repeat (descriptive)"]
    assert set(decisive["predictions"]) == {"seed-averaged (3 repeats)"}
    assert set(many.loc[many["family"] == "per repeat (descriptive)", "predictions"]) == {
        "repeat 0", "repeat 1", "repeat 2"}
    files = []
    for (variant, fold), g in preds.assign(model="deep").groupby(["variant", "fold"]):
        path = tmp_path / "shenzhen" / str(variant) / f"fold{fold}" / "predictions.csv"
        path.parent.mkdir(parents=True)
        g.to_csv(path, index=False)
        files.append(path)
    metrics = evaluate(files, threshold=0.5, n_boot=20, seed=0)
    assert set(metrics["predictions"]) == {"repeat 0"}
