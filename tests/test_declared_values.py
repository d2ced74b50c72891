"""Every value a job uses is declared to Snakemake (issue 25): a script reads its rule's
``params``, ``input``, ``output``, ``wildcards``, ``threads`` and ``log``, never
``snakemake.config`` (invisible to Snakemake: changing it reruns nothing, and the report can show
a value the results were not made with), a config file, nor a results path it rebuilds by hand.
In the rules, the config is read only where Snakemake records or schedules it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk")) + [ROOT / "Snakefile"]
#: Rule sections where a config value may appear: params are recorded (a change reruns the job);
#: threads and resources only schedule it.
CONFIG_SECTIONS = {"params", "threads", "resources"}
#: config used as a value: config[...], config.get, {config[...]} in a shell string, =config.
CONFIG_USE = re.compile(r"\bconfig\s*[\[.(]|[={(,]\s*config\b")


def config_reads(source: str) -> list[str]:
    """Where a script's code reaches the config other than through params, one line each."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr == "config" and not (
                isinstance(node.value, ast.Attribute) and node.value.attr == "params"):
            problems.append(f"line {line}: .config (use a params: entry of the rule)")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n == "yaml" or n.startswith("cxrbs.core.config") for n in names):
                problems.append(f"line {line}: imports {', '.join(filter(None, names))} "
                                "(a script does not read config files)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.endswith((".yaml", ".yml")) or "results/" in text:
                problems.append(f"line {line}: {text!r} (take the path from input/output)")
    return problems


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_reads_nothing_undeclared(script: Path) -> None:
    problems = config_reads(script.read_text(encoding="utf-8"))
    assert not problems, f"{script.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("source", [
    "x = snakemake.config['seed']",
    "x = sm.config.get('seed')",
    "def main(sm):\n    return percentiles(sm.config)",
    "import yaml",
    "from cxrbs.core.config import load_schema",
    "model = Path(f\"results/bs/models/{arch}/best.pt\")",
    "cfg = open('config/config.yaml')",
])
def test_the_check_sees_each_kind_of_undeclared_read(source: str) -> None:
    assert config_reads(source)


def rule_config_reads(text: str) -> list[str]:
    """(rule, section, line) where a rule body reads ``config`` outside CONFIG_SECTIONS."""
    problems, rule, section, in_doc = [], None, None, False
    for number, line in enumerate(text.splitlines(), 1):
        if in_doc or line.strip().startswith('"""'):  # a docstring: words, not code
            in_doc = (line.count('"""') % 2 == 1) != in_doc
            continue
        if m := re.match(r"^(?:rule|checkpoint) (\w+):", line):
            rule, section = m.group(1), None
            continue
        if line and not line[0].isspace():
            rule = None  # module-level code: input functions, globals, includes
            continue
        if rule is None:
            continue
        if m := re.match(r"^    (\w+):", line):
            section = m.group(1)
        if CONFIG_USE.search(line.split("#", 1)[0]) and section not in CONFIG_SECTIONS:
            problems.append(f"line {number}: rule {rule}, {section}: {line.strip()}")
    return problems


@pytest.mark.parametrize("rules", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_rules_read_the_config_only_where_snakemake_records_it(rules: Path) -> None:
    problems = rule_config_reads(rules.read_text(encoding="utf-8"))
    assert not problems, f"{rules.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_rule_check_sees_a_config_read_in_a_shell_command() -> None:
    text = ('rule x:\n    output:\n        "a"\n    shell:\n'
            '        "echo {config[seed]} > {output}"\n')
    assert rule_config_reads(text) == ['line 5: rule x, shell: "echo {config[seed]} > {output}"']
    ok = ('rule x:\n    """Writes the config."""\n    params:\n        seed=config["seed"],\n'
          '        config=config,\n    threads: config["t"]\n')
    assert rule_config_reads(ok) == []
