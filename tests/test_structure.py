"""The package's import graph and the workflow's run-time files keep the shape DEVELOPERS.md gives.

Import graph, read with ``ast`` (nothing is imported):

* a node is a module under ``src/cxrbs`` (a package is its ``__init__.py``);
* an edge is an ``import`` or ``from ... import`` statement naming a module of the package,
  wherever it stands: at module level, inside a function, under ``if``. ``from pkg import mod``
  points at ``pkg.mod`` when that is a module, otherwise at ``pkg``. The parent packages that
  Python runs on the way (``cxrbs.models`` for ``cxrbs.models.registry``) are not edges: they
  would make every package's ``__init__`` re-export a circle;
* in-function ("lazy") imports count like any other: deferring an import keeps torch out of
  ``--help`` but hides a circle rather than removing it, so none may close one. ``core/`` may not
  reach above itself lazily either.

Floors (lowest first): ``cxrbs`` (the version only) and ``cxrbs.core``; ``cxrbs.stats`` (shared
statistics); ``data``, ``models``, ``training``; the stages ``bs``, ``cls``, ``explain``,
``report``; ``cxrbs.config_checks`` (needs the registry and the bundled models); ``commands``
and ``cli``. The tests below hold the two rules a newcomer cannot see from the folders: the
core is grounded, and there is no circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CORE = "cxrbs.core"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(src: Path, package: str = "cxrbs") -> dict[str, set[str]]:
    """module -> the package's modules it imports (every import statement, lazy ones too)."""
    paths = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    while parts and ".".join(parts) not in paths:
                        parts.pop()
                    if parts:
                        targets.add(".".join(parts))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    if sub in paths:
                        targets.add(sub)
                    elif module in paths:
                        targets.add(module)
        targets.discard(name)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_from_core(graph: dict[str, set[str]]) -> list[str]:
    """``core.x -> pkg.y`` for every import from ``cxrbs.core`` to anything but core or the root."""
    return [f"{m} -> {t}" for m, ts in sorted(graph.items())
            if m == CORE or m.startswith(CORE + ".")
            for t in sorted(ts) if t != "cxrbs" and not (t == CORE or t.startswith(CORE + "."))]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC)


def test_the_walker_sees_the_package(graph: dict[str, set[str]]) -> None:
    """A walker that found nothing would pass everything: check known edges, lazy ones too."""
    assert len(graph) > 80
    assert "cxrbs.stats" in graph["cxrbs.bs.paired_stats"]
    assert "cxrbs.core.hashing" in graph["cxrbs.models.checkpoint"]
    assert "cxrbs.config_checks" in graph["cxrbs.commands.info"]  # inside a function
    assert "cxrbs.bs.pretrained" in graph["cxrbs.config_checks"]  # inside a function
    assert graph["cxrbs"] == set()


def test_core_imports_nothing_above_it(graph: dict[str, set[str]]) -> None:
    assert upward_from_core(graph) == []


def test_no_import_circle(graph: dict[str, set[str]]) -> None:
    assert circles(graph) == []


def test_shared_statistics_need_only_the_core(graph: dict[str, set[str]]) -> None:
    assert all(t.startswith(CORE) for t in graph["cxrbs.stats"])
    assert not any(t.startswith("cxrbs.cls") for m, ts in graph.items()
                   if m.startswith("cxrbs.bs") for t in ts)


def test_the_checks_fail_on_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    pkg = tmp_path / "cxrbs"
    for folder in ("core", "bs", "data"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "config.py").write_text(
        "def f():\n    from cxrbs.bs.pretrained import g\n    return g\n")
    (pkg / "bs" / "pretrained.py").write_text("from cxrbs.core import config\ng = 1\n")
    (pkg / "data" / "a.py").write_text("from . import b\n")
    (pkg / "data" / "b.py").write_text("from .a import x\n")
    g = import_graph(tmp_path)
    assert upward_from_core(g) == ["cxrbs.core.config -> cxrbs.bs.pretrained"]
    assert circles(g) == [["cxrbs.bs.pretrained", "cxrbs.core.config"],
                          ["cxrbs.data.a", "cxrbs.data.b"]]


# ----------------------------------------------------------------------------- run-time files

BENCHMARK = re.compile(r"^(\s*)benchmark:\s*\n\s*(\S.*)$", re.MULTILINE)


def test_snakemake_benchmark_files_go_under_logs() -> None:
    """Snakemake's run-time ``benchmark:`` tables are outputs, not sources: ``benchmarks/``
    holds only the hand-run measurement scripts."""
    found = []
    for rules in sorted((ROOT / "workflow").rglob("*.smk")):
        for match in BENCHMARK.finditer(rules.read_text(encoding="utf-8")):
            found.append((rules.name, match.group(2)))
    assert found, "no benchmark: directive found; did the rules move?"
    wrong = [f"{name}: {path}" for name, path in found
             if not path.strip("\"'").startswith("logs/benchmarks/")]
    assert wrong == []


RULE = re.compile(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", re.MULTILINE | re.DOTALL)


def rule_bodies(text: str) -> dict[str, str]:
    """Rule name -> its indented body, from a Snakefile's text."""
    return {m.group(1): m.group(2) for m in RULE.finditer(text)}


def test_every_job_rule_has_a_log_and_a_benchmark() -> None:
    """Every rule that runs a job leaves its log and its time and memory table (``all`` only
    gathers targets); a new rule without them fails here, not in a user's SLURM accounting."""
    bodies: dict[str, str] = {}
    for rules in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        bodies.update(rule_bodies(rules.read_text(encoding="utf-8")))
    assert len(bodies) > 20, "rules not found; did they move?"
    missing = [f"{name}: {key}" for name, body in sorted(bodies.items()) if name != "all"
               for key in ("log:", "benchmark:") if f"\n    {key}" not in f"\n{body}"]
    assert missing == []
    assert "benchmark:" not in rule_bodies("rule a:\n    input:\n        'x'\nrule b:\n"
                                           "    benchmark:\n        'y'\n")["a"]
