"""The SLURM profile: what the executor plugin submits, and the demo DAG on a real (tiny) cluster.

The unit tests read the plugin's own sbatch-argument builders and the profile; they need no
cluster. The integration test starts a single-node SLURM cluster (tests/slurm_cluster.py: needs
root and Debian's slurm-wlm + munge, skipped otherwise), runs the demo through
``--profile profiles/slurm`` and checks that every non-local job went through sbatch, to the
partition the profile names, and that the results equal those of a plain local run.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from slurm_cluster import SlurmCluster, machine_memory_mb, missing_requirements, slurm_cluster

# The local demo run to compare with is the session fixture demo_run in conftest.py.
ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
LOCAL_PROFILE = ROOT / "profiles" / "local" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


class Resources(dict):
    """Snakemake's job.resources answers both .get() and attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def mock_job(threads: int = 1, **resources: Any) -> SimpleNamespace:
    return SimpleNamespace(resources=Resources(resources), threads=threads, name="train_bs")


def profile() -> dict[str, Any]:
    return yaml.safe_load(PROFILE.read_text())


def rule_blocks() -> Iterator[tuple[str, str]]:
    """(name, body) of every rule in workflow/rules/*.smk."""
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(r"^rule (\w+):", smk.read_text(), flags=re.M)
        yield from zip(blocks[1::2], blocks[2::2])


def all_rules() -> set[str]:
    return {name for name, _ in rule_blocks()}


def gpu_rules() -> set[str]:
    """Rules whose ``resources:`` ask for a GPU, read from the rule files themselves."""
    return {name for name, body in rule_blocks() if re.search(r"^\s+gpu=1,", body, flags=re.M)}


def dry_run(profile_dir: str, workdir: Path) -> list[tuple[str, dict[str, str]]]:
    """Jobs and resources Snakemake plans for the demo under a profile (fails on a bad key)."""
    result = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "-n", "--profile",
                             profile_dir, "--configfile", str(DEMO)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    jobs = job_resources(result.stdout)
    assert jobs, result.stdout[-3000:]
    return jobs


def job_resources(log: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every non-local job Snakemake printed."""
    jobs: list[tuple[str, dict[str, str]]] = []
    rule = None
    for line in log.splitlines():
        m = re.match(r"^(local)?rule (\w+):$", line.strip())
        if m:
            rule = None if m.group(1) else m.group(2)
        elif rule and line.strip().startswith("resources:"):
            pairs = (item.split("=", 1) for item in line.split(":", 1)[1].split(", "))
            jobs.append((rule, {k.strip(): v.strip() for k, v in pairs}))
            rule = None
    return jobs


# --- unit tests: no cluster -------------------------------------------------------------------

def test_gpu_resource_becomes_gpus_argument() -> None:
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    assert set_gres_string(mock_job(gpu=1, gpu_model="a100")).strip() == "--gpus=a100:1"
    assert set_gres_string(mock_job(gpu=1)).strip() == "--gpus=1"
    assert set_gres_string(mock_job(gpu=2, gpu_model="h100")).strip() == "--gpus=h100:2"
    assert set_gres_string(mock_job(gpu=0)) == ""  # a CPU job asks for no GPU


def test_gpu_job_submit_line_has_time_memory_and_cpus() -> None:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    params = {"run_uuid": "u", "slurm_logfile": "/x/%j.log", "comment_str": "rule_train_bs",
              "account": "", "partition": "-p gpu", "workdir": "/w"}
    gpu = get_submit_command(mock_job(threads=3, gpu=1, runtime=720, mem_mb=2000), params)
    assert "-p gpu" in gpu and "-t 720" in gpu and "--mem 2000" in gpu
    assert "--cpus-per-task=3" in gpu
    assert "--ntasks=" not in gpu  # GPU jobs leave task geometry to the cluster
    cpu = get_submit_command(mock_job(threads=2, runtime=120, mem_mb=8000), params)
    assert "--ntasks=1" in cpu and "--cpus-per-task=2" in cpu


def test_profile_settings_for_clusters_without_accounting() -> None:
    config = profile()
    assert config["executor"] == "slurm"
    assert config["slurm-status-command"] == "squeue"
    assert config["slurm-no-account"] is True
    assert config["default-resources"]["slurm_partition"]
    assert config["default-resources"]["runtime"] > 0 and config["default-resources"]["mem_mb"] > 0


def test_every_gpu_rule_goes_to_the_gpu_partition() -> None:
    rules = gpu_rules()
    assert {"train_bs", "pretrain_cls", "finetune_cls", "suppress_tb"} <= rules
    set_resources = profile()["set-resources"]
    for rule in rules:
        assert set_resources[rule]["slurm_partition"] == "gpu", rule
        assert set_resources[rule]["runtime"] > 0, rule
    assert set(set_resources) <= all_rules(), "set-resources names a rule that does not exist"


def test_local_profile_limits_gpu_jobs(tmp_path: Path) -> None:
    assert yaml.safe_load(LOCAL_PROFILE.read_text())["resources"]["gpu"] >= 1
    gpu = gpu_rules()
    for rule, res in dry_run("profiles/local", tmp_path):
        assert (res.get("gpu") == "1") == (rule in gpu), (rule, res)
        assert "slurm_partition" not in res


def test_dry_run_with_slurm_profile_assigns_partitions(tmp_path: Path) -> None:
    """Snakemake itself applies the profile: GPU jobs carry gpu=1 and the gpu partition."""
    jobs = dry_run("profiles/slurm", tmp_path)
    gpu = gpu_rules()
    for rule, res in jobs:
        want = "gpu" if rule in gpu else profile()["default-resources"]["slurm_partition"]
        assert res.get("slurm_partition") == want, (rule, res)
        assert (res.get("gpu") == "1") == (rule in gpu), (rule, res)


# --- integration: a real single-node cluster ---------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    # Memory is not consumable on the test cluster; the node only has to admit the profile's asks.
    memory = max(machine_memory_mb(), int(profile()["default-resources"]["mem_mb"]))
    with slurm_cluster(tmp_path_factory.mktemp("slurm"), cpus=2, memory_mb=memory) as running:
        yield running


def start_demo_on_slurm(cluster: SlurmCluster, workdir: Path, log: Path) -> subprocess.Popen[str]:
    # First status check after 1 s instead of 40 s: test jobs take seconds, not hours.
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--profile", "profiles/slurm",
           "--configfile", str(DEMO), "--slurm-init-seconds-before-status-checks", "1"]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=cluster.env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def slurm_jobs(cluster: SlurmCluster) -> dict[str, dict[str, str]]:
    """What slurmctld itself recorded for each job id (squeue keeps them for MinJobAge)."""
    fields = ["jobid", "partition", "tres", "state", "comment"]
    result = cluster.run("squeue", "--states=all", "--noheader",
                         "-O", "JobID:|,Partition:|,tres-per-job:|,State:|,Comment:")
    assert result.returncode == 0, result.stderr
    rows = [dict(zip(fields, (c.strip() for c in line.split("|"))))
            for line in result.stdout.splitlines() if line.strip()]
    return {row["jobid"]: row for row in rows}


def is_timing(key: str) -> bool:
    """Wall-clock fields (seconds, throughput, UTC time stamps) differ between any two runs."""
    return key.endswith(("seconds", "_per_s", "_utc"))


def without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not is_timing(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def result_content(workdir: Path, rel: str) -> Any:
    """A result file's content, comparable across runs: work folder and timings left out."""
    path = workdir / rel
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).tobytes()
    text = path.read_text().replace(str(workdir), "<workdir>")
    if path.suffix == ".json":
        return without_timing(json.loads(text))
    return [without_timing(row) for row in csv.DictReader(io.StringIO(text))]


def result_files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*")
            if p.suffix in {".csv", ".json", ".npy"}}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_demo_on_slurm_matches_the_local_run(cluster: SlurmCluster, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    slurm_dir = tmp_path / "work"
    slurm_dir.mkdir()
    log_file = tmp_path / "snakemake.log"
    start = time.monotonic()
    proc = start_demo_on_slurm(cluster, slurm_dir, log_file)
    try:
        # the local run goes on meanwhile: SLURM jobs spend much of their time waiting
        local_dir: Path = request.getfixturevalue("demo_run")
        rc = proc.wait(timeout=3000)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_file.read_text()
    assert rc == 0, log[-6000:]
    print(f"demo DAG on the test SLURM cluster: {time.monotonic() - start:.0f} s")

    # every non-local job went through sbatch once, and slurmctld saw it complete
    planned = Counter(rule for rule, _ in job_resources(log))
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    assert len(submitted) == sum(planned.values()) > 0, planned
    assert len(set(submitted.values())) == len(submitted)
    assert "fetch_dataset" not in planned  # a local rule: downloads run on the login node
    assert "Trying to restart" not in log, "a job failed and was retried"
    recorded = slurm_jobs(cluster)
    gpu = gpu_rules()
    seen: Counter[str] = Counter()
    for slurm_id in submitted.values():
        job = recorded[slurm_id]
        rule = re.match(r"rule_(\w+?)(?:_wildcards_|$)", job["comment"]).group(1)
        seen[rule] += 1
        assert job["state"] == "COMPLETED", job
        assert job["partition"] == ("gpu" if rule in gpu else "cpu"), job
        assert ("gpu:1" in job["tres"]) == (rule in gpu), job
    assert seen == planned

    # the same results as the local run, file by file
    names = result_files(local_dir)
    assert {"results/bs/eval/summary.csv", "results/cls/metrics.csv"} <= names
    assert result_files(slurm_dir) == names
    for rel in sorted(names):
        assert result_content(slurm_dir, rel) == result_content(local_dir, rel), rel
    assert (slurm_dir / "results" / "report.html").is_file()
