"""Rerun scope (issue 25): after one config key changes, `snakemake -n` plans exactly the stages
that key feeds, and nothing trained is redone for a statistics or report setting.

The finished demo is emulated cheaply: every output of the demo DAG is created empty, then
``snakemake --touch --forceall`` runs each job's bookkeeping without its script, so Snakemake
records the same provenance a real run records (params, input set, code, mtimes in job order).
Rerun decisions read only that provenance, so the planned jobs are those of a real finished demo;
the ``slow`` variant checks the same table on the real demo (the session's ``demo_run``).

The README's "What a config change reruns" table says the same in words; a test keeps the two
in step.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_workflow import DEMO, ROOT, output, planned_jobs, snakemake

TRAINING = {"train_bs", "pretrain_cls", "finetune_cls", "finetune_cls_repeat"}
DATA = {"fetch_dataset", "build_manifest", "make_folds", "prepare_bs_pairs"}
BS_EVAL = {"evaluate_bs", "evaluate_identity", "summarize_bs"}
REPORTING = {"explain", "arm_measures", "figures", "report"}


def set_key(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


# key, new value, the rules that must rerun (rule -> number of jobs; None: at least one),
# the rules that must not. `all` is left out: it has no outputs and reruns with anything.
RERUN_TABLE: list[tuple[str, Any, dict[str, int | None], set[str]]] = [
    # statistics of the bone-suppression choice: the choice itself stands
    # (the figures plot the paired tests: forest plot of model vs identity, issue 23)
    ("bs.n_boot", 300, {"paired_bs": 1, "figures": 1, "report": 1},
     TRAINING | DATA | BS_EVAL | {"select_bs", "suppress_tb", "evaluate_cls", "compare_cls",
                                  "explain", "arm_measures"}),
    # classification statistics and thresholds: evaluation, comparison and the report only
    ("cls.n_boot", 300, {"evaluate_cls": 1, "arm_measures": 1, "figures": 1, "report": 1},
     TRAINING | DATA | BS_EVAL | {"select_bs", "paired_bs", "suppress_tb", "compare_cls",
                                  "explain"}),
    ("cls.threshold", 0.4, {"evaluate_cls": 1, "compare_cls": 1, "explain": 1, "figures": 1,
                            "report": 1},
     TRAINING | DATA | BS_EVAL | {"select_bs", "paired_bs", "suppress_tb", "arm_measures"}),
    ("report.crm_examples", 3, {"explain": 1, "figures": 1, "report": 1},
     TRAINING | DATA | BS_EVAL | {"select_bs", "paired_bs", "suppress_tb", "evaluate_cls",
                                  "compare_cls", "arm_measures"}),
    # the decision: another checkpoint may be chosen, so what is trained on it reruns
    ("bs.select_metric", "ssim", {"select_bs": 1, "paired_bs": 1, "suppress_tb": 2,
                                  "finetune_cls": 8},
     DATA | BS_EVAL | {"train_bs", "pretrain_cls"}),
    ("cls.finetune.epochs", 13, {"finetune_cls": 16, "evaluate_cls": 1, "compare_cls": 1}
     | dict.fromkeys(REPORTING, 1),
     DATA | BS_EVAL | {"train_bs", "pretrain_cls", "select_bs", "paired_bs", "suppress_tb"}),
    ("bs.train.epochs", 16, {"train_bs": 4, "evaluate_bs": 12, "select_bs": 1, "suppress_tb": 2,
                             "finetune_cls": 8},
     DATA | {"evaluate_identity", "pretrain_cls"}),
    # the contrast stretch: every stack is rebuilt, so everything after the downloads reruns
    ("preprocess.high_percentile", 98.5, {"build_manifest": 5, "train_bs": 4, "pretrain_cls": 1,
                                          "finetune_cls": 16},
     {"fetch_dataset"}),
]


def write_edited(tmp_path: Path, key: str, value: Any) -> Path:
    config = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    set_key(key, value)(config)
    path = tmp_path / f"{key}.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def touched_demo(workdir: Path) -> Path:
    """The demo DAG's outputs, empty, with the provenance of a finished run (see the docstring)."""
    plan = snakemake("-n", "--configfile", str(DEMO), workdir=workdir)
    assert plan.returncode == 0, output(plan)[-3000:]
    outputs = [item.strip() for line in plan.stdout.splitlines()
               if (m := re.match(r"^\s*output: (.*)$", line)) for item in m.group(1).split(",")]
    folders = {o for o in outputs if not Path(o).suffix}
    assert folders == {"results/figures"}, folders  # the one directory() output
    for item in outputs:
        path = workdir / item
        if item in folders:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    touched = snakemake("--touch", "--forceall", "--cores", "1", "--configfile", str(DEMO),
                        workdir=workdir)
    assert touched.returncode == 0, output(touched)[-3000:]
    return workdir


@pytest.fixture(scope="module")
def touched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return touched_demo(tmp_path_factory.mktemp("touched_demo"))


@pytest.fixture(params=["touched", pytest.param("demo_run", marks=pytest.mark.slow)])
def finished(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def planned(workdir: Path, config: Path) -> Counter[str]:
    result = snakemake("-n", "--configfile", str(config), workdir=workdir)
    assert result.returncode == 0, output(result)[-3000:]
    return Counter(rule for rule, _ in planned_jobs(result) if rule != "all")


def test_nothing_reruns_without_a_change(finished: Path) -> None:
    assert planned(finished, DEMO) == Counter()


@pytest.mark.parametrize(("key", "value", "rerun", "kept"), RERUN_TABLE,
                         ids=[row[0] for row in RERUN_TABLE])
def test_a_config_change_reruns_exactly_what_it_feeds(
        finished: Path, tmp_path: Path, key: str, value: Any, rerun: dict[str, int | None],
        kept: set[str]) -> None:
    jobs = planned(finished, write_edited(tmp_path, key, value))
    for rule, count in rerun.items():
        assert jobs[rule] >= 1, (key, rule, dict(jobs))
        if count is not None:
            assert jobs[rule] == count, (key, rule, dict(jobs))
    assert not set(jobs) & kept, (key, sorted(set(jobs) & kept))
    if key in {"bs.n_boot", "cls.n_boot", "report.crm_examples"}:
        assert set(jobs) == set(rerun), (key, dict(jobs))  # exactly these, nothing else


def test_the_decision_rule_reads_no_statistics_setting() -> None:
    """best.json's job declares only what the choice depends on; the paired tests' settings are
    another job's (the same split the table above measures)."""
    text = (ROOT / "workflow" / "rules" / "bone_suppression.smk").read_text(encoding="utf-8")
    select = re.search(r"^rule select_bs:\n(.*?)(?=^rule )", text, re.S | re.M)
    assert select is not None
    body = select.group(1)
    params = re.search(r"^    params:\n(.*?)(?=^    \w+:)", body, re.S | re.M)
    assert params is not None
    names = set(re.findall(r"^        (\w+)=", params.group(1), re.M))
    assert names == {"metric", "selection_set"}, names
    assert "per_image" not in body and "paired.csv" not in body


def test_readme_states_the_same_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### What a config change reruns")
    section = readme[start:readme.index("\n#", start + 10)]
    for key, *_ in RERUN_TABLE:
        assert f"`{key}`" in section, key


def test_touched_demo_is_what_a_run_records(touched: Path) -> None:
    """Snakemake kept provenance for every job (else params changes could not trigger reruns)."""
    records = list((touched / ".snakemake" / "metadata").iterdir())
    assert len(records) >= 100  # one record per output file


def test_a_lung_crop_for_one_set_reruns_that_sets_fine_tunes_only(touched: Path,
                                                                   tmp_path: Path) -> None:
    """cls.lung_crop names Montgomery, whose lung masks were already configured: its 8 fine-tunes
    and what reads them rerun; Shenzhen's fine-tunes, the data, pretraining and bone suppression
    stand. (Adding ``lung_masks`` itself changes the data set's spec, so that step is made
    first, on a copy of the finished demo, and recorded with --touch.)"""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(touched, work, symlinks=True)
    masks = tmp_path / "masks"
    masks.mkdir()
    config = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    config["datasets"]["montgomery"]["lung_masks"] = str(masks)
    with_masks = tmp_path / "masks.yaml"
    with_masks.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    touched_again = snakemake("--touch", "--cores", "1", "--configfile", str(with_masks),
                              workdir=work)
    assert touched_again.returncode == 0, output(touched_again)[-3000:]
    assert planned(work, with_masks) == Counter()
    config["cls"]["lung_crop"] = {"datasets": ["montgomery"], "margin": 0.1}
    path = tmp_path / "crop.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = snakemake("-n", "--configfile", str(path), workdir=work)
    assert result.returncode == 0, output(result)[-3000:]
    jobs = planned_jobs(result)
    finetunes = [w for rule, w in jobs if rule == "finetune_cls"]
    assert len(finetunes) == 8 and all("montgomery" in str(w) for w in finetunes), finetunes
    rules = Counter(rule for rule, _ in jobs if rule != "all")
    assert not set(rules) & (DATA | BS_EVAL | {"train_bs", "pretrain_cls", "select_bs",
                                               "paired_bs", "suppress_tb"}), dict(rules)
    assert {"evaluate_cls", "compare_cls", "explain", "arm_measures"} <= set(rules), dict(rules)
