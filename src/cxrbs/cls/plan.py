"""The frozen analysis plan (issue 22 item 8): a hash and UTC timestamp of every analysis-relevant
config value, written by the workflow beside the classification results.

The workflow's ``analysis_plan`` rule has exactly these values as params, so Snakemake reruns it
only when one of them changes; training does not read it (a new plan retrains nothing; an
``ancient`` input would hide params changes downstream from Snakemake), the comparison reads it and records the hash it was computed under. The
timestamp is that of the first time this hash was written: a forced rerun with the same values
keeps it (``analysis_plan.history.jsonl`` beside the plan keeps every hash seen, in order), so a
plan changed after results were seen shows as a later timestamp and an earlier hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxrbs.core.atomic import write_json

#: The column of comparison.csv naming the plan hash it was computed under.
PLAN_COLUMN = "analysis_plan_sha256"
#: The plan's file name under results/cls/.
PLAN_NAME = "analysis_plan.json"


def plan_hash(values: Mapping[str, Any]) -> str:
    """sha256 of the values as canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def history_path(plan_path: Path) -> Path:
    return Path(plan_path).with_suffix(".history.jsonl")


def read_history(plan_path: Path) -> list[dict[str, Any]]:
    path = history_path(plan_path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "sha256" in entry:
            out.append(entry)
    return out


def write_plan(path: Path, values: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Write ``path`` (JSON: sha256, fixed_utc, values, earlier plans); the timestamp is kept when
    the last recorded plan has the same hash, else a new entry is appended to the history."""
    digest = plan_hash(values)
    history = read_history(path)
    if history and history[-1]["sha256"] == digest:
        fixed = str(history[-1]["fixed_utc"])
    else:
        fixed = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = {"sha256": digest, "fixed_utc": fixed}
        hist = history_path(path)
        hist.parent.mkdir(parents=True, exist_ok=True)
        with hist.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        history.append(entry)
    plan = {"sha256": digest, "fixed_utc": fixed,
            "values": json.loads(json.dumps(dict(values), default=str)),
            "earlier_plans": [h for h in history[:-1] if h["sha256"] != digest]}
    write_json(path, plan)
    return plan


def read_plan(path: Path) -> dict[str, Any] | None:
    if not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan_lines(plan: Mapping[str, Any] | None, computed_under: set[str]) -> tuple[str, list[str]]:
    """The report's line on the plan, and warnings: the comparison computed under another hash,
    or the plan changed after it was first fixed."""
    if not plan:
        return "No analysis plan file (results/cls/analysis_plan.json) was found.", []
    digest = str(plan.get("sha256", ""))
    line = (f"Analysis plan sha256 {digest[:16]}…, fixed {plan.get('fixed_utc')} (UTC), before "
            "the first classification job: " + ", ".join(sorted(plan.get("values") or {})) + ".")
    warnings = []
    other = sorted(h for h in computed_under if h and h != digest)
    if other:
        warnings.append(f"The comparison was computed under analysis plan {other[0][:16]}…, not "
                        f"the current plan {digest[:16]}…: rerun compare_cls.")
    earlier = plan.get("earlier_plans") or []
    if earlier:
        first = earlier[0]
        warnings.append(f"The analysis plan was changed after it was first fixed "
                        f"({first.get('fixed_utc')}, sha256 {str(first.get('sha256'))[:16]}…; "
                        f"{len(earlier)} earlier plan(s)): the current plan dates from "
                        f"{plan.get('fixed_utc')}.")
    return line, warnings


def plan_status(cls_dir: Path, comparison: Any = None) -> tuple[str, list[str]]:
    """:func:`plan_lines` for the workflow's ``results/cls`` and its comparison table."""
    under: set[str] = set()
    if comparison is not None and PLAN_COLUMN in getattr(comparison, "columns", ()):
        under = {str(h) for h in comparison[PLAN_COLUMN].dropna()}
    return plan_lines(read_plan(Path(cls_dir) / PLAN_NAME), under)
