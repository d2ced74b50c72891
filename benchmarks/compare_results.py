"""Compare two workflow results/ folders: every CSV/JSON equal except wall-clock timing fields.

Used to check that a refactor leaves the demo's outputs unchanged (issue 11):
    make demo && cp -r results /tmp/before   # on the old commit
    make clean-demo && make demo              # on the new commit
    .venv/bin/python benchmarks/compare_results.py /tmp/before/results results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

TIMING = {"seconds", "images_per_s", "train_seconds", "s", "max_rss", "cpu_time"}


def _json_equal(a: Path, b: Path) -> list[str]:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    if not (isinstance(x, dict) and isinstance(y, dict)):
        return [] if x == y else ["(whole file)"]
    return sorted(k for k in set(x) | set(y) if k not in TIMING and x.get(k) != y.get(k))


def _csv_equal(a: Path, b: Path) -> list[str]:
    x, y = pd.read_csv(a), pd.read_csv(b)
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return ["(columns or rows)"]
    return [c for c in x.columns if c not in TIMING and not x[c].equals(y[c])]


def main(before: str, after: str) -> int:
    old, new = Path(before), Path(after)
    files = sorted(p.relative_to(old) for p in old.rglob("*") if p.suffix in (".csv", ".json"))
    identical = timing_only = 0
    problems = []
    for rel in files:
        a, b = old / rel, new / rel
        if not b.is_file():
            problems.append(f"missing in {new}: {rel}")
        elif a.read_bytes() == b.read_bytes():
            identical += 1
        else:
            diff = _csv_equal(a, b) if rel.suffix == ".csv" else _json_equal(a, b)
            if diff:
                problems.append(f"{rel}: {', '.join(diff)}")
            else:
                timing_only += 1
    print(f"{len(files)} CSV/JSON files: {identical} byte-identical, {timing_only} differ only in "
          f"timing fields ({', '.join(sorted(TIMING))}), {len(problems)} differ otherwise")
    for line in problems:
        print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
