"""Recover from a stale Snakemake lock before `make demo`, but only when it really is stale.

A killed ``snakemake`` leaves ``.snakemake/locks/*.lock`` behind, and the next run stops with
Snakemake's LockException (issue 15). A lock is stale when no snakemake process runs with this
folder as its working directory; then Snakemake's own ``--unlock`` removes it. When another
snakemake does run here, its lock is real: we say which process holds it and change nothing.

Usage (the Makefile's demo target): ``python -m cxrbs.core.stale_lock SNAKEMAKE [ARGS...]``,
where ARGS are the options the run will use (``--configfile ...``), so ``--unlock`` parses the
same workflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOCK_DIR = Path(".snakemake") / "locks"


def has_locks(workdir: Path) -> bool:
    """Whether Snakemake lock files (``N.input.lock``/``N.output.lock``) exist in ``workdir``."""
    locks = workdir / LOCK_DIR
    return locks.is_dir() and any(locks.glob("*.lock"))


def _is_snakemake(argv: list[str]) -> bool:
    """`snakemake ...`, `python .../bin/snakemake ...` or `python -m snakemake ...`."""
    head = argv[:3]
    if any(Path(a).name == "snakemake" for a in head):
        return True
    if "-m" not in head:
        return False
    i = head.index("-m") + 1
    return i < len(argv) and argv[i] == "snakemake"


def _ancestors() -> set[int]:
    """This process and its parents (the make/sh that started us mention snakemake too)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def snakemake_processes(workdir: Path) -> list[int]:
    """Pids of other snakemake processes whose working directory is ``workdir`` (Linux /proc)."""
    target, mine, found = workdir.resolve(), _ancestors(), []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if _is_snakemake([a for a in argv if a]) and Path(os.readlink(entry / "cwd")) == target:
                found.append(pid)
        except OSError:  # gone, or another user's process: it cannot hold our lock files
            continue
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    """0: no lock, or a stale one removed; 2: another snakemake holds the lock (one line why)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m cxrbs.core.stale_lock SNAKEMAKE [ARGS...]", file=sys.stderr)
        return 2
    workdir = Path.cwd()
    if not has_locks(workdir):
        return 0
    if not Path("/proc/self").exists():  # no way to tell: leave it to snakemake's LockException
        return 0
    others = snakemake_processes(workdir)
    if others:
        print(f"error: another snakemake (pid {', '.join(map(str, others))}) runs in {workdir}: "
              "wait for it to finish or stop it, then run again", file=sys.stderr)
        return 2
    print(f"removing a stale Snakemake lock in {workdir} (left by a killed run; no snakemake "
          "runs here)", file=sys.stderr)
    done = subprocess.run([args[0], "--unlock", *args[1:]], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"error: snakemake --unlock failed in {workdir}: {last}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
