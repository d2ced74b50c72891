"""Config checking with messages that name the key (``bs.train.epochs``), before any job runs.

This is the schema part, which needs nothing above ``cxrbs.core``; the whole check (schema, then
model arguments, bundled models, patient regexes) is :func:`cxrbs.config_checks.check_config`.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


# Shipped as package data, so a wheel install validates configs too; the workflow's
# workflow/schemas/config.schema.yaml is a link to this file (one schema, no copies).
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"


#: The config file(s) the workflow runs with, for messages written inside jobs (environment
#: variables reach job processes, locally and on a cluster).
CONFIG_FILES_ENV = "CXRBS_CONFIG_FILES"


def use_config_files(files: Sequence[str | Path]) -> None:
    """Called by the workflow at start: later messages name these files, not the default."""
    os.environ[CONFIG_FILES_ENV] = ", ".join(map(str, files)) or "config/config.yaml"


def config_file_name() -> str:
    """The config file a message should point at: the one given (--configfile), if known."""
    return os.environ.get(CONFIG_FILES_ENV) or "config/config.yaml (or your --configfile)"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema, parsed once per process (libyaml where present): every import of
    the CLI reads defaults from it, and the pure-Python parse cost 0.1-0.3 s of `cxrbs
    suppress`'s start (issue 24). Callers get their own copy to change."""
    stat = Path(path).stat()
    return copy.deepcopy(_parsed_schema(str(path), stat.st_mtime_ns, stat.st_size))


@functools.cache
def _parsed_schema(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (safe loader)


def schema_default(*keys: str, schema: Mapping[str, Any] | None = None) -> Any:
    """The schema's default of a dotted setting (``schema_default("preprocess", "low_percentile")``):
    code that needs a setting's value outside a workflow job takes it from here, never a copy."""
    node: Any = schema if schema is not None else load_schema()
    for key in keys:
        node = node["properties"][key]
    return node["default"]


#: The study's contrast stretch (preprocess.low_percentile / high_percentile), for callers outside
#: a workflow job (the CLI, old checkpoints without the fields); jobs get the config's via params.
LOW_PCT = float(schema_default("preprocess", "low_percentile"))
HIGH_PCT = float(schema_default("preprocess", "high_percentile"))


#: Keys that existed once and are refused with the reason, instead of "unknown key".
REMOVED_KEYS = {
    ("bs", "select_test_set"): "bs.select_test_set was removed: models are selected on validation "
                               "data only (issue 12); delete the key",
}


def config_problems(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every schema violation as one line: the dotted key, then what is wrong with it."""
    from jsonschema import Draft202012Validator  # here: `cxrbs suppress` never validates a config

    validator = Draft202012Validator(schema)
    lines = []
    for (section, key), why in REMOVED_KEYS.items():
        if isinstance(config.get(section), dict) and key in config[section]:
            lines.append(f"config key {section}.{key}: {why}")
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(p) for p in err.path) or "(top level)"
        message = err.message
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for extra in sorted(set(err.instance) - known):
                if (key, extra) in REMOVED_KEYS:
                    continue  # reported above with its reason
                full = f"{key}.{extra}" if err.path else str(extra)
                lines.append(f"config key {full}: unknown key (known keys here: {', '.join(sorted(known))})")
            continue
        if err.validator == "oneOf" and "datasets" in key:
            message = "give exactly one of url, path, registration or synthetic"
        lines.append(f"config key {key}: {message}")
    return lines
