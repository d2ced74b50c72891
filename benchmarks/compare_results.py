"""Compare two workflow results/ folders: every CSV/JSON equal except wall-clock timing fields.

Used to check that a refactor leaves the demo's outputs unchanged (issues 11, 21). Time stamps
(keys ending in ``_utc``) count as timing; the two workflow folders' own paths are compared
relative to each folder (two checkouts side by side); columns the new code adds are listed, and
the columns both have must still agree:
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


def _timing(key: str) -> bool:
    return key in TIMING or key.endswith("_utc")


def _json_equal(a: Path, b: Path) -> list[str]:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    if not (isinstance(x, dict) and isinstance(y, dict)):
        return [] if x == y else ["(whole file)"]
    return sorted(k for k in set(x) | set(y) if not _timing(k) and x.get(k) != y.get(k))


def _relative(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Text cells with this workflow folder's absolute path made relative to it."""
    prefix = str(root.resolve()) + "/"
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(lambda v: v.replace(prefix, "") if isinstance(v, str) else v)
    return out


def _csv_equal(a: Path, b: Path, roots: tuple[Path, Path]) -> tuple[list[str], list[str]]:
    """(columns that differ, columns only the new file has)."""
    x, y = _relative(pd.read_csv(a), roots[0]), _relative(pd.read_csv(b), roots[1])
    added = [c for c in y.columns if c not in x.columns]
    if [c for c in x.columns if c not in y.columns] or len(x) != len(y):
        return ["(columns or rows)"], added
    return [c for c in x.columns if not _timing(c) and not x[c].equals(y[c])], added


def main(before: str, after: str) -> int:
    old, new = Path(before), Path(after)
    roots = (old.resolve().parent, new.resolve().parent)  # the workflow folders
    files = sorted(p.relative_to(old) for p in old.rglob("*") if p.suffix in (".csv", ".json"))
    identical = timing_only = 0
    problems, additions = [], []
    for rel in files:
        a, b = old / rel, new / rel
        if not b.is_file():
            problems.append(f"missing in {new}: {rel}")
        elif a.read_bytes() == b.read_bytes():
            identical += 1
        else:
            added: list[str] = []
            if rel.suffix == ".csv":
                diff, added = _csv_equal(a, b, roots)
            else:
                diff = _json_equal(a, b)
            if added:
                additions.append(f"{rel}: {', '.join(added)}")
            if diff:
                problems.append(f"{rel}: {', '.join(diff)}")
            else:
                timing_only += 1
    print(f"{len(files)} CSV/JSON files: {identical} byte-identical, {timing_only} differ only in "
          f"timing fields ({', '.join(sorted(TIMING))}, *_utc), workflow-folder paths or added "
          f"columns, {len(problems)} differ otherwise")
    for line in problems:
        print("  " + line)
    if additions:
        print(f"{len(additions)} file(s) gained columns (the shared columns agree):")
        for line in additions:
            print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
