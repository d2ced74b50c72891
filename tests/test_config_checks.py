"""Config mistakes the schema cannot see stop the workflow at start, one line naming the key.

Each of these used to pass validation and fail inside a job after other jobs had run: a model
argument the constructor refuses, a crop larger than the image, no ``bs_train`` data set
("need at least one array to concatenate"), an invalid ``patient_regex`` (``re.error``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxrbs.config_checks import check_config, model_kwarg_problems, semantic_problems
from cxrbs.core.errors import CxrbsError

ROOT = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
Edit = Callable[[dict[str, Any]], None]


def _drop_bs_train(c: dict[str, Any]) -> None:
    del c["datasets"]["jsrt_bse"]


CASES: list[tuple[Edit, str]] = [
    (lambda c: c["bs"]["architectures"]["resnet_bs"].update(depth=3),
     "bs.architectures.resnet_bs.depth: resnet_bs has no argument 'depth'"),
    (lambda c: c["bs"]["architectures"]["resnet_bs"].update(width="abc"),
     "bs.architectures.resnet_bs.width: must be an integer"),
    (lambda c: c["bs"]["architectures"]["ae_bs"].update(widths=[8, 16]),
     "bs.architectures.ae_bs: model 'ae_bs': widths needs 3 entries"),
    (lambda c: c["bs"]["architectures"]["rl_bs"].update(output="sideways"),
     "bs.architectures.rl_bs: output must be one of direct, residual"),
    (lambda c: c["cls"].update(model_kwargs={"dropout": 2.0}),
     "cls.model_kwargs: dropout must be in [0, 1)"),
    (lambda c: c["cls"].update(model_kwargs={"widths": "wide"}),
     "cls.model_kwargs.widths: must be a comma-separated list of integers"),
    (lambda c: c["bs"]["train"].update(crop_size=96),
     "bs.train.crop_size: 96 is larger than image_size 64"),
    (_drop_bs_train, "datasets: no data set has role: bs_train"),
    (lambda c: c["datasets"]["cxr8_pretrain"].update(patient_regex="^(\\d{8}_"),
     "datasets.cxr8_pretrain.patient_regex: '^(\\\\d{8}_' is not a valid regular expression"),
    (lambda c: c["datasets"]["cxr8_pretrain"].update(patient_regex="^\\d{8}_"),
     "datasets.cxr8_pretrain.patient_regex: '^\\\\d{8}_' needs a group"),
]


def _edited(edit: Edit) -> dict[str, Any]:
    config = copy.deepcopy(DEMO)
    edit(config)
    return config


@pytest.mark.parametrize("edit, expected", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_mistake_is_named_before_any_job(edit: Edit, expected: str) -> None:
    config = _edited(edit)
    problems = semantic_problems(config)
    assert problems == [f"config key {expected}" + problems[0].split(expected, 1)[1]], problems
    with pytest.raises(CxrbsError, match="invalid configuration in my.yaml"):
        check_config(config, config_files=["my.yaml"])


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml", "shared_cpu.yaml"])
def test_shipped_configs_pass(name: str) -> None:
    check_config(yaml.safe_load((ROOT / "config" / name).read_text()))


def test_model_kwargs_checked_without_building_weights() -> None:
    """VGG-16 (138 M parameters) is checked on the meta device: no memory, no time."""
    assert model_kwarg_problems("vgg16", {"num_classes": 2, "dropout": 0.1}) == []
    assert model_kwarg_problems("rl_bs", {"dilated_index": None}) == []
    assert model_kwarg_problems("resnet_bs", {"width": True})[0][0] == "width"


def test_workflow_names_the_key_and_the_config_file(tmp_path: Path) -> None:
    from test_workflow import snakemake

    config = _edited(lambda c: c["bs"]["architectures"]["resnet_bs"].update(depth=3))
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), workdir=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key bs.architectures.resnet_bs.depth" in text and str(path) in text
    assert "Traceback" not in text and not (tmp_path / "results").exists()


def test_data_set_messages_name_the_config_file_in_use(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrbs.core.config import CONFIG_FILES_ENV
    from cxrbs.data.download import materialize_source

    monkeypatch.setenv(CONFIG_FILES_ENV, "other.yaml")
    with pytest.raises(CxrbsError) as info:
        materialize_source({"path": str(tmp_path / "missing")}, tmp_path / "dest", name="jsrt")
    assert "datasets.jsrt.path in other.yaml" in str(info.value)
    assert "config/config.yaml" not in str(info.value)


def test_the_stretch_defaults_come_from_the_schema_not_a_copy() -> None:
    from cxrbs.core import config as cfg
    from cxrbs.data import preprocess

    schema = cfg.load_schema()
    pre = schema["properties"]["preprocess"]["properties"]
    assert (cfg.LOW_PCT, cfg.HIGH_PCT) == (pre["low_percentile"]["default"],
                                           pre["high_percentile"]["default"])
    assert cfg.schema_default("bs", "n_boot", schema=schema) == 2000
    import inspect

    sig = inspect.signature(preprocess.preprocess)
    assert sig.parameters["high_pct"].default is cfg.HIGH_PCT
