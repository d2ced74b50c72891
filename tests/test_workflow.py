"""The workflow as users run it: lint, dry run, config errors, the demo DAG, and reruns.

The demo runs once per session in a temporary folder (``--directory``), so the user's own
``results/`` is never touched. Rerun checks read Snakemake's own dry-run job list.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO = ROOT / "config" / "demo.yaml"


def snakemake(*args: str, workdir: Path | None = None, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    cmd = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile")]
    if workdir is not None:
        cmd += ["--directory", str(workdir)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def planned_jobs(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job in a dry run's output."""
    jobs, rule = [], None
    for line in result.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            if rule is not None:
                jobs.append((rule, ""))
            rule = m.group(1)
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and rule is not None:
            jobs.append((rule, m.group(1)))
            rule = None
        elif line.strip().startswith("jobid:") and rule is not None and "wildcards" not in line:
            pass
    if rule is not None:
        jobs.append((rule, ""))
    return jobs


def write_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    edit(config)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_lint_is_clean() -> None:
    result = snakemake("--lint", "--configfile", str(DEMO))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_dry_run_lists_every_stage(tmp_path: Path) -> None:
    result = snakemake("-n", "--configfile", str(DEMO), workdir=tmp_path)
    assert result.returncode == 0, output(result)[-5000:]
    rules = {rule for rule, _ in planned_jobs(result)}
    expected = {"fetch_dataset", "build_manifest", "make_folds", "prepare_bs_pairs", "train_bs",
                "evaluate_bs", "evaluate_identity", "summarize_bs", "select_bs", "paired_bs",
                "suppress_tb", "pretrain_cls", "finetune_cls", "evaluate_cls", "compare_cls"}
    assert expected <= rules, expected - rules


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.update(bogus_key=1), "bogus_key"),
        (lambda c: c["bs"]["train"].update(epochs="three"), "bs.train.epochs"),
        (lambda c: c["bs"]["architectures"].update(segnet_bs={}), "bs.architectures"),
        (lambda c: c["datasets"]["scanner2"].update(path="/x"), "datasets.scanner2"),
        # issue 12: selecting the model on a test set is refused, with the reason
        (lambda c: c["bs"].update(select_test_set="des"),
         "bs.select_test_set: bs.select_test_set was removed: models are selected on validation"),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path: Path, edit, key: str) -> None:
    config = write_config(tmp_path, edit)
    result = snakemake("-n", "--configfile", str(config), workdir=tmp_path)
    assert result.returncode != 0
    assert f"config key {key}" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_demo_produces_every_stage(demo_run: Path) -> None:
    for rel in ["results/bs/eval/summary.csv", "results/bs/best.json",
                "results/suppressed/shenzhen/manifest.csv", "results/cls/metrics.csv",
                "results/cls/comparison.csv", "results/report.html"]:
        assert (demo_run / rel).is_file(), rel
    for arch in ("ae_bs", "convnet_bs", "rl_bs", "resnet_bs"):
        assert (demo_run / f"results/bs/models/{arch}/best.pt").is_file()
    summary = (demo_run / "results/bs/eval/summary.csv").read_text()
    assert "identity" in summary
    # nothing half-written anywhere
    leftovers = [p for p in (demo_run / "results").rglob("*") if ".tmp" in p.name or p.suffix == ".part"]
    assert leftovers == []


@pytest.mark.slow
def test_complete_run_has_nothing_to_rerun(demo_run: Path) -> None:
    result = snakemake("-n", "--configfile", str(DEMO), workdir=demo_run)
    assert result.returncode == 0, output(result)[-5000:]
    assert planned_jobs(result) == [], result.stdout[-3000:]


@pytest.mark.slow
def test_changing_one_architecture_reruns_only_its_branch(demo_run: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, lambda c: c["bs"]["architectures"]["resnet_bs"].update(n_blocks=3))
    jobs = planned_jobs(snakemake("-n", "--configfile", str(config), workdir=demo_run))
    rules = {rule for rule, _ in jobs}
    trained = {wc for rule, wc in jobs if rule == "train_bs"}
    assert trained == {"arch=resnet_bs"}
    assert {"evaluate_bs", "summarize_bs", "select_bs"} <= rules
    assert not rules & {"fetch_dataset", "build_manifest", "make_folds", "prepare_bs_pairs",
                        "evaluate_identity", "pretrain_cls"}
    evaluated = {wc for rule, wc in jobs if rule == "evaluate_bs"}
    assert all("arch=resnet_bs" in wc for wc in evaluated)
    finetuned = {wc for rule, wc in jobs if rule == "finetune_cls"}
    assert finetuned and all("variant=bone_suppressed" in wc for wc in finetuned)


@pytest.mark.slow
def test_changing_a_classification_parameter_reruns_no_bone_suppression_job(
        demo_run: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, lambda c: c["cls"]["finetune"].update(lr=0.001))
    jobs = planned_jobs(snakemake("-n", "--configfile", str(config), workdir=demo_run))
    rules = {rule for rule, _ in jobs}
    assert "finetune_cls" in rules
    assert not rules & {"train_bs", "evaluate_bs", "evaluate_identity", "summarize_bs", "select_bs",
                        "suppress_tb", "prepare_bs_pairs", "build_manifest", "fetch_dataset"}


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000"]
REPORT_SECTIONS = ["Data", "Statistical methods", "Bone suppression", "Classification", "Statistics", "Relevance maps",
                   "Feature space", "Configuration and software"]


@pytest.mark.slow
def test_report_opens_in_a_real_browser_with_every_image(demo_run: Path, tmp_path: Path) -> None:
    """Headless Chromium loads the demo report: every image decodes, every section is there."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    html = (demo_run / "results" / "report.html").read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load', () => {"
             "const imgs = [...document.images];"
             "document.body.dataset.images = imgs.length;"
             "document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;"
             "document.body.dataset.headings = [...document.querySelectorAll('h2')]"
             ".map(h => h.textContent.trim()).join('|');});</script>")
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = result.stdout
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="(\d+)"', dom)
    headings = re.search(r'data-headings="([^"]*)"', dom)
    assert images and broken and headings, result.stderr[-2000:]
    assert int(images.group(1)) >= 10
    assert int(broken.group(1)) == 0
    found = headings.group(1).split("|")
    for section in REPORT_SECTIONS:
        assert section in found, (section, found)
    assert "SYNTHETIC" in html
