"""One validation source: every limit in the config schema holds in the dataclasses that check it.

The workflow validates a config against ``config.schema.yaml``; the CLI and the package build
``TrainConfig``, ``ClsTrainConfig`` and ``AugmentConfig`` directly. Each schema limit is tried
at its boundary (accepted) and one step outside (refused) on the matching dataclass, so the two
can never drift apart again (as ``crop_size`` >= 16 vs >= 5 and ``val_fraction`` < 0.5 vs < 1 did).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cxrbs.bs.augment import AugmentConfig
from cxrbs.bs.train import TrainConfig
from cxrbs.cls.train import ClsTrainConfig
from cxrbs.core.schema_rules import schema_rule
from cxrbs.core.config import load_schema
from cxrbs.core.errors import CxrbsError

Build = Callable[[dict[str, Any]], object]


def _cls_augment(values: dict[str, Any]) -> object:
    return ClsTrainConfig.from_dict({"augment": values})


#: Schema section -> how the package turns it into a checked dataclass.
SECTIONS: dict[str, Build] = {
    "bs.train": TrainConfig.from_mapping,
    "cls.pretrain": ClsTrainConfig.from_dict,
    "cls.pretrain.augment": _cls_augment,
    "bs.augment": lambda values: AugmentConfig(**values),
}
#: Schema keys checked elsewhere, not by the section's dataclass (with where).
ELSEWHERE = {
    ("bs.augment", "n_pairs"): "bs.pairs.prepare_pairs (CLI: --n-pairs)",
    ("bs.augment", "zoom"): "array: tested in test_zoom_limits_agree",
}


def _rule(section: str) -> dict[str, Any]:
    return dict(schema_rule(section).get("properties") or {})


def _numeric_cases() -> Iterator[Any]:
    for section in SECTIONS:
        for key, rule in sorted(_rule(section).items()):
            if (section, key) in ELSEWHERE:
                continue
            types = rule.get("type")
            types = [types] if isinstance(types, str) else list(types or [])
            if not {"integer", "number"} & set(types):
                continue
            for bound in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
                if bound in rule:
                    yield pytest.param(section, key, bound, rule[bound], "integer" in types,
                                       id=f"{section}.{key}.{bound}")


def _enum_cases() -> Iterator[Any]:
    for section in SECTIONS:
        for key, rule in sorted(_rule(section).items()):
            if "enum" in rule:
                yield pytest.param(section, key, list(rule["enum"]), id=f"{section}.{key}")


@pytest.mark.parametrize("section, key, bound, limit, integer", list(_numeric_cases()))
def test_numeric_limit_agrees_with_schema(section: str, key: str, bound: str, limit: float,
                                          integer: bool) -> None:
    step = 1 if integer else 1e-6 * max(1.0, abs(limit))
    inside, outside = {
        "minimum": (limit, limit - step),
        "exclusiveMinimum": (limit + step, limit),
        "maximum": (limit, limit + step),
        "exclusiveMaximum": (limit - step, limit),
    }[bound]
    build = SECTIONS[section]
    build({key: inside})  # the schema accepts it, so must the dataclass
    with pytest.raises(CxrbsError, match=key):
        build({key: outside})


@pytest.mark.parametrize("section, key, options", list(_enum_cases()))
def test_choices_agree_with_schema(section: str, key: str, options: list[str]) -> None:
    build = SECTIONS[section]
    for option in options:
        build({key: option})
    with pytest.raises(CxrbsError, match=key):
        build({key: "not-an-option"})


def test_every_section_key_is_a_dataclass_field() -> None:
    """A schema key the dataclass does not know would be refused as unknown at run time."""
    for section, build in SECTIONS.items():
        for key, rule in _rule(section).items():
            if (section, key) in ELSEWHERE or "default" not in rule:
                continue
            build({key: rule["default"]})


def test_zoom_limits_agree() -> None:
    rule = load_schema()["properties"]["bs"]["properties"]["augment"]["properties"]["zoom"]
    assert rule["items"]["exclusiveMinimum"] == 0 and rule["minItems"] == rule["maxItems"] == 2
    AugmentConfig(zoom=(1e-6, 1.0))
    for bad in ((0.0, 1.0), (-0.1, 1.0), (1.0,)):
        with pytest.raises(CxrbsError, match="zoom"):
            AugmentConfig(zoom=bad)  # type: ignore[arg-type]
