"""``cxrbs check-config FILE``: a config file checked as Snakemake will read it, with places.

Snakemake parses ``--configfile`` before any of the workflow's code runs, and on a YAML syntax
error says only "Config file is not valid JSON or YAML" (no file, no line). This check parses the
file the same way (JSON first, then YAML), and reports each problem as one line
``FILE:LINE:COL: problem``: the syntax error where the parser stopped, then (for a file that
parses) every schema violation and (given ``semantic``, as :mod:`cxrbs.config_checks` does) every
deeper mistake, at the line of the key it names.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cxrbs.core.config import SCHEMA_PATH, config_problems, load_schema
from cxrbs.core.errors import CxrbsError

_KEY = re.compile(r"^config key ([^:]+):")


def _place(name: str, line: int, column: int) -> str:
    return f"{name}:{line + 1}:{column + 1}"


def _read_text(path: Path) -> str:
    """The file's text; a missing, special or non-UTF-8 file is one CxrbsError line."""
    name = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise CxrbsError(f"{name}: does not exist; check the path of the config file") from exc
    except OSError as exc:
        raise CxrbsError(f"{name}: cannot read it ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):  # a pipe would block, a folder cannot be parsed
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise CxrbsError(f"{name}: is {what}; give the path of a YAML config file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        line, column = before.count("\n"), len(before) - (before.rfind("\n") + 1)
        raise CxrbsError(f"{_place(name, line, column)}: not UTF-8 text (byte "
                         f"0x{raw[exc.start]:02x}); save the file as UTF-8") from exc


def _syntax_problem(name: str, text: str, exc: yaml.YAMLError) -> str:
    """One line from PyYAML's error: where it stopped, what it found, what it was inside."""
    mark = (exc.problem_mark or exc.context_mark) if isinstance(exc, yaml.MarkedYAMLError) else None
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        if exc.context and exc.problem and exc.context_mark is not None:
            problem += (f" ({' '.join(exc.context.split())} at line "
                        f"{exc.context_mark.line + 1}, column {exc.context_mark.column + 1})")
        lines = text.splitlines()
        if mark.line < len(lines) and "\t" in lines[mark.line]:
            problem += "; YAML indents with spaces only, never tabs"
        return f"{_place(name, mark.line, mark.column)}: {problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n"), len(before) - (before.rfind("\n") + 1)
        return (f"{_place(name, line, column)}: character #x{exc.character:04x} is not allowed "
                "in YAML; delete it")
    return f"{name}:1:1: {' '.join(str(exc).split())}"


def _duplicates(node: yaml.Node, name: str) -> list[str]:
    """Keys given twice in one mapping: YAML keeps the last silently, so the first is lost."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    first = seen[key.value].start_mark
                    problems.append(
                        f"{_place(name, key.start_mark.line, key.start_mark.column)}: duplicate "
                        f"key {key.value!r} (first at line {first.line + 1}); only this later "
                        "value would be used: delete one")
                seen[key.value] = key
            problems += _duplicates(value, name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems += _duplicates(item, name)
    return problems


def _mark_of(root: yaml.Node | None, dotted: str) -> yaml.Mark | None:
    """Where the deepest existing part of ``a.b.0.c`` is written (the key, for a mapping)."""
    if root is None:
        return None
    node, mark = root, root.start_mark
    for part in dotted.split("."):
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not found:
                break
            key, node = found[-1]
            mark = key.start_mark
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            mark = node.start_mark
        else:
            break
    return mark


def config_file_problems(
        path: str | os.PathLike[str], *,
        semantic: Callable[[dict[str, Any]], list[str]] | None = None,
        schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Every problem of a config file, one ``FILE:LINE:COL: problem`` line each ([] = valid).

    ``semantic`` (:func:`cxrbs.config_checks.semantic_problems`) adds the checks beyond the
    schema, for a config the schema accepts; without it only the schema is checked.
    """
    path = Path(path)
    name = str(path)
    text = _read_text(path)
    root: yaml.Node | None = None
    try:
        config: Any = json.loads(text)  # Snakemake tries JSON first, then YAML
    except ValueError:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            return [_syntax_problem(name, text, exc)]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None  # valid JSON that YAML reads otherwise: no places, the checks still run
    if config is None:
        return [f"{name}:1:1: the file is empty (or only comments): give the keys at the top "
                "level, e.g. as in config/demo.yaml"]
    if not isinstance(config, dict):
        mark = root.start_mark if root is not None else None
        where = _place(name, mark.line, mark.column) if mark else f"{name}:1:1"
        return [f"{where}: the top level must be a mapping of keys (key: value), not "
                f"{type(config).__name__}"]
    problems = _duplicates(root, name) if root is not None else []
    found = config_problems(config, load_schema(schema_path))
    if not found and semantic is not None:
        found = semantic(config)
    for line in found:
        m = _KEY.match(line)
        mark = _mark_of(root, m.group(1)) if m else None
        problems.append(f"{_place(name, mark.line, mark.column) if mark else name}: {line}")
    return problems
