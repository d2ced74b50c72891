"""The name tables of cxrbs.core.names against the registry, the schema, the CLI and the modules."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from cxrbs import cli
from cxrbs.core import names
from cxrbs.core.config import load_schema
from cxrbs.models import list_models

SCHEMA = load_schema()
P = SCHEMA["properties"]
DATASET = P["datasets"]["additionalProperties"]["properties"]
CLS_TRAIN = SCHEMA["$defs"]["cls_train"]["properties"]


def test_registry_names_equal_the_tables() -> None:
    assert list_models("bs") == sorted(names.BS_ARCHITECTURES)
    assert list_models("cls") == sorted(names.CLS_MODELS)


@pytest.mark.parametrize("table, enum", [
    (names.BS_ARCHITECTURES, P["bs"]["properties"]["architectures"]["propertyNames"]["enum"]),
    (names.CLS_MODELS, P["cls"]["properties"]["model"]["enum"]),
    (names.BS_METRICS, P["bs"]["properties"]["select_metric"]["enum"]),
    (names.VARIANTS + names.OPTIONAL_VARIANTS, P["cls"]["properties"]["variants"]["items"]["enum"]),
    (names.AMP_MODES, P["bs"]["properties"]["train"]["properties"]["amp"]["enum"]),
    (names.AMP_MODES, CLS_TRAIN["amp"]["enum"]),
    (names.OPTIMIZERS, CLS_TRAIN["optimizer"]["enum"]),
    (names.SCHEDULES, CLS_TRAIN["schedule"]["enum"]),
    (names.DATASET_ROLES, DATASET["role"]["enum"]),
    (names.DATASET_LAYOUTS, DATASET["layout"]["enum"]),
    (names.PHANTOM_KINDS, DATASET["synthetic"]["properties"]["kind"]["enum"]),
    (names.PAIR_STRETCH, P["preprocess"]["properties"]["pair_stretch"]["enum"]),
], ids=lambda v: v[0] if isinstance(v, tuple) else None)
def test_schema_enums_equal_the_tables(table: tuple[str, ...], enum: list[str]) -> None:
    assert sorted(table) == sorted(enum)


def _choices(command: str, dest: str) -> list[Any]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    return sorted(action.choices or [])


@pytest.mark.parametrize("command, dest, table", [
    ("train-bs", "arch", names.BS_ARCHITECTURES),
    ("train-bs", "amp", names.AMP_MODES),
    ("train-cls", "model", names.CLS_MODELS),
    ("train-cls", "optimizer", names.OPTIMIZERS),
    ("train-cls", "layout", names.TB_LAYOUTS),
    ("phantoms", "kind", names.PHANTOM_KINDS),
    ("suppress", "format", names.OUTPUT_FORMATS),
])
def test_cli_choices_equal_the_tables(command: str, dest: str, table: tuple[str, ...]) -> None:
    assert _choices(command, dest) == sorted(table)


def test_module_constants_equal_the_tables() -> None:
    from cxrbs.bs.evaluate import METRICS
    from cxrbs.bs.suppress import OUTPUT_FORMATS
    from cxrbs.cls.compare import OPTIONAL_VARIANTS, VARIANTS
    from cxrbs.core.device import AMP_MODES
    from cxrbs.data.phantoms import PHANTOM_KINDS
    from cxrbs.models.base import OUTPUT_MODES

    assert tuple(METRICS) == names.BS_METRICS
    assert tuple(OUTPUT_FORMATS) == names.OUTPUT_FORMATS
    assert tuple(VARIANTS) == names.VARIANTS
    assert tuple(OPTIONAL_VARIANTS) == names.OPTIONAL_VARIANTS
    assert tuple(AMP_MODES) == names.AMP_MODES
    assert tuple(PHANTOM_KINDS) == names.PHANTOM_KINDS
    assert tuple(OUTPUT_MODES) == names.OUTPUT_MODES


def test_names_module_is_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, cxrbs.core.names, cxrbs.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
