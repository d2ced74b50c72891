"""One value against its rule in ``config.schema.yaml`` (type, choices, bounds).

Why: the training settings are built outside a workflow run too (``cxrbs train-bs``, tests, the
search scripts), by dataclasses that must refuse what the schema refuses and default to what it
defaults to. Reading both from the schema here leaves it the only place a default or a range is
written; the dataclasses and the CLI flags only ask (issue 21).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cxrbs.core.config import load_schema

__all__ = ["describe_rule", "rule_problem", "section_defaults", "section_rules", "schema_rule"]


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/name``) followed."""
    ref = node.get("$ref")
    if ref is None:
        return dict(node)
    target: Any = schema
    for part in str(ref).removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def schema_rule(key: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rule of a dotted setting (``bs.train``, ``cls.pretrain.augment``; ``*`` = any data
    set name), references followed; {} for a key the schema does not know."""
    if schema is None:
        return copy.deepcopy(_cached_rule(key))
    node: dict[str, Any] = _resolve(schema, schema)
    for part in key.split("."):
        if part == "*":
            child = node.get("additionalProperties") or {}
        else:
            child = (node.get("properties") or {}).get(part) or {}
        node = _resolve(child, schema)
    return node


@functools.cache
def _cached_rule(key: str) -> dict[str, Any]:
    return schema_rule(key, load_schema())


def section_rules(node: Mapping[str, Any],
                  schema: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Key -> rule of every property of an object rule (references followed)."""
    root = schema if schema is not None else load_schema()
    return {k: _resolve(v, root) for k, v in (node.get("properties") or {}).items()}


def section_defaults(node: Mapping[str, Any],
                     schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Key -> default of every property of an object rule that has one."""
    return {k: r["default"] for k, r in section_rules(node, schema).items() if "default" in r}


def _types(rule: Mapping[str, Any]) -> list[str]:
    types = rule.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def describe_rule(rule: Mapping[str, Any]) -> str:
    """'an integer >= 1', 'a number in (0, 0.5)': a numeric rule in words."""
    what = "an integer" if "integer" in _types(rule) else "a number"
    lo, hi = rule.get("minimum"), rule.get("maximum")
    xlo, xhi = rule.get("exclusiveMinimum"), rule.get("exclusiveMaximum")
    if (lo is not None or xlo is not None) and (hi is not None or xhi is not None):
        return (f"{what} in {'[' if xlo is None else '('}{lo if xlo is None else xlo:g}, "
                f"{hi if xhi is None else xhi:g}{']' if xhi is None else ')'}")
    if lo is not None:
        return f"{what} >= {lo:g}"
    if xlo is not None:
        return f"{what} > {xlo:g}"
    if hi is not None:
        return f"{what} <= {hi:g}"
    return what


def _number_ok(value: Any, rule: Mapping[str, Any]) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        return False
    if not math.isfinite(float(value)):
        return False
    if "integer" in _types(rule) and not isinstance(value, (int, np.integer)):
        return False
    checks = (("minimum", lambda b: value >= b), ("exclusiveMinimum", lambda b: value > b),
              ("maximum", lambda b: value <= b), ("exclusiveMaximum", lambda b: value < b))
    return all(test(rule[bound]) for bound, test in checks if bound in rule)


def rule_problem(value: Any, rule: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under ``rule`` ('must be an integer >= 1'), or None."""
    types = _types(rule)
    if value is None:
        if "null" in types or "null" in (rule.get("enum") or []):
            return None
    elif "enum" in rule:
        if value in rule["enum"]:
            return None
        return f"must be one of {', '.join(str(v) for v in rule['enum'])}"
    if "boolean" in types:
        return None if isinstance(value, bool) else "must be true or false"
    if {"integer", "number"} & set(types):
        return None if _number_ok(value, rule) else f"must be {describe_rule(rule)}"
    if "object" in types:
        return None if isinstance(value, Mapping) else "must be a mapping"
    if "string" in types:
        return None if isinstance(value, str) else "must be a string"
    return None if value is not None else "must be given"
