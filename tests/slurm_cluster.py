"""A throwaway single-node SLURM cluster (munged + slurmctld + slurmd) for integration tests.

Everything lives in one temporary folder: config, munge key and socket, state, spool and logs, so
the machine's own /etc/slurm and /run/munge are never read or written, and free TCP ports are
picked so a second test session on the same machine does not collide. Daemons run in the
foreground as children of the test process and are stopped by their own process ids.

Two partitions, ``cpu`` and ``gpu``, match the names in profiles/slurm/config.yaml, and the node
declares GPU GRES backed by /dev/null and /dev/zero, so ``sbatch --gpus=1`` is scheduled for
real (nothing uses them: torch here is a CPU build). Memory is not a consumable resource
(``CR_Core``), so the declared node memory only has to admit what jobs ask for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
PARTITIONS = ("cpu", "gpu")
FAKE_GPU_FILES = ("/dev/null", "/dev/zero")


def program(name: str) -> str | None:
    """Full path of a SLURM/munge program; daemons live in sbin, which PATH may leave out."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def missing_requirements() -> str | None:
    """Why a cluster cannot start here (a reason for pytest.skip), or None when it can."""
    if os.geteuid() != 0:
        return "a test SLURM cluster runs its daemons as root; this process is not root"
    missing = [name for name in (*DAEMONS, *CLIENTS) if program(name) is None]
    if missing:
        return (f"SLURM/munge programs not installed: {', '.join(missing)} "
                "(Debian: apt-get install slurm-wlm munge)")
    return None


def machine_memory_mb() -> int:
    """MemTotal of this machine in MB (slurmd's own notion of RealMemory)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal missing from /proc/meminfo")


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on 127.0.0.1 right now (held open together so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@dataclass(frozen=True)
class SlurmCluster:
    """Handle to a running test cluster: its config file and the environment that reaches it."""

    root: Path
    conf: Path
    node: str
    bin_dir: Path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for SLURM clients: SLURM_CONF plus the srun wrapper first on PATH."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def node_state(self) -> str:
        """The node's state as sinfo says it ("idle", "drained", ...), "" while unreachable."""
        result = self.run("sinfo", "--noheader", "--Node", "--format=%T")
        lines = result.stdout.split() if result.returncode == 0 else []
        return lines[0] if lines else ""


def slurm_conf(root: Path, node: str, ports: list[int], cpus: int, memory_mb: int,
               gpus: int) -> str:
    """slurm.conf for one node without accounting: sacct has no database, squeue is the status.

    MinJobAge keeps finished jobs visible to squeue for an hour: the test reads them back, and
    the SLURM executor plugin trusts squeue only where MinJobAge spans three status checks.
    """
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    lines = [
        "ClusterName=cxrbstest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        # the declared CPUs/memory win over what slurmd detects (containers report oddly)
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MinJobAge=3600",
        "SchedulerType=sched/backfill",
        *(["GresTypes=gpu"] if gpus else []),
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}{gres}"
        " State=UNKNOWN",
        *(f"PartitionName={name} Nodes={node} MaxTime=INFINITE State=UP"
          + (" Default=YES" if i == 0 else "") for i, name in enumerate(PARTITIONS)),
    ]
    return "\n".join(lines) + "\n"


def write_files(root: Path, node: str, cpus: int, memory_mb: int, gpus: int) -> SlurmCluster:
    """Config, gres.conf, munge key and the srun wrapper, all under ``root``."""
    for sub in ("munge", "state", "spool", "log", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "munge").chmod(0o755)  # munged wants its socket folder reachable by every user
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, node, free_ports(2), cpus, memory_mb, gpus))
    # slurmd drops file-less GPUs, so each fake one is backed by a harmless character device
    if gpus > len(FAKE_GPU_FILES):
        raise ValueError(f"the test cluster fakes at most {len(FAKE_GPU_FILES)} GPUs, not {gpus}")
    (root / "gres.conf").write_text(
        "".join(f"NodeName={node} Name=gpu File={dev}\n" for dev in FAKE_GPU_FILES[:gpus]))
    # The slurm-jobstep plugin strips SLURM_* (SLURM_CONF too) before its nested srun, and this
    # cluster's config is not in /etc/slurm: the wrapper puts SLURM_CONF back for srun alone.
    srun = root / "bin" / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {program("srun")} "$@"\n')
    srun.chmod(0o755)
    return SlurmCluster(root=root, conf=conf, node=node, bin_dir=root / "bin")


def start_daemon(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)


def log_tail(root: Path, n: int = 40) -> str:
    parts = []
    for path in sorted((root / "log").glob("*")):
        lines = path.read_text(errors="replace").splitlines()[-n:]
        parts.append(f"--- {path.name}\n" + "\n".join(lines))
    return "\n".join(parts)


def wait_until_idle(cluster: SlurmCluster, procs: list[subprocess.Popen[bytes]],
                    timeout: float) -> None:
    """Poll sinfo until the node is idle; resume it once if it registered drained."""
    deadline = time.monotonic() + timeout
    resumed = False
    state = ""
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited while starting the test cluster:\n"
                               f"{log_tail(cluster.root)}")
        state = cluster.node_state()
        if state == "idle":
            return
        if not resumed and any(word in state for word in ("drain", "inval")):
            cluster.run("scontrol", "update", f"NodeName={cluster.node}", "State=RESUME")
            resumed = True
        time.sleep(0.5)
    raise RuntimeError(f"test cluster node still '{state}' after {timeout:.0f} s:\n"
                       f"{log_tail(cluster.root)}")


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """Terminate our own daemons (newest first) by pid; kill any that outlive the grace period."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace)


def cancel_jobs(cluster: SlurmCluster, timeout: float = 30) -> None:
    """Cancel whatever is still queued or running, so no job step outlives slurmd."""
    cluster.run("scancel", "--user=root")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cluster.run("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING",
                             "--format=%i")
        if result.returncode != 0 or not result.stdout.strip():
            return
        time.sleep(0.5)


@contextlib.contextmanager
def slurm_cluster(root: Path, cpus: int = 2, memory_mb: int | None = None, gpus: int = 2,
                  timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under ``root``; yield once the node is idle.

    ``memory_mb`` defaults to this machine's memory; a larger value lets jobs ask for more
    than the machine has (nothing enforces it on this cluster).
    """
    reason = missing_requirements()
    if reason:
        raise RuntimeError(reason)
    node = socket.gethostname().split(".")[0]
    cluster = write_files(root, node, cpus, memory_mb or machine_memory_mb(), gpus)
    env = cluster.env()
    munge_dir = root / "munge"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # --force: munged refuses socket folders below the 0700 folders pytest makes otherwise
        procs.append(start_daemon(
            [str(program("munged")), "--foreground", "--force",
             f"--key-file={munge_dir / 'munge.key'}", f"--socket={munge_dir / 'munge.socket'}",
             f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
             "--num-threads=2"],
            root / "log" / "munged.out", env))
        wait_for_path(munge_dir / "munge.socket", procs[0], timeout)
        procs.append(start_daemon([str(program("slurmctld")), "-D", "-f", str(cluster.conf)],
                                  root / "log" / "slurmctld.out", env))
        procs.append(start_daemon([str(program("slurmd")), "-D", "-f", str(cluster.conf)],
                                  root / "log" / "slurmd.out", env))
        wait_until_idle(cluster, procs, timeout)
        yield cluster
    finally:
        if len(procs) == len(DAEMONS) and all(p.poll() is None for p in procs):
            cancel_jobs(cluster)
        stop(procs)


def wait_for_path(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[0]} did not create {path}")
        time.sleep(0.1)
