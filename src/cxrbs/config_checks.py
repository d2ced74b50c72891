"""The whole config check: the schema (:mod:`cxrbs.core.config`), then the mistakes beyond it.

The deeper checks need the model registry (constructor arguments) and the bundled models
(``bs.pretrained``), so they live here, above the stages, and ``cxrbs.core`` stays free of
them. Both the workflow (``workflow/rules/common.smk``) and the CLI (``cxrbs check-config``,
the ``--model-kwargs`` option checks) call this module. The registry and ``cxrbs.bs`` are
imported inside the functions: parsing the workflow in a job process (``deep=False``) and
``cxrbs check-config --schema-only`` do not import torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxrbs.core import config_file
from cxrbs.core.config import SCHEMA_PATH, config_problems, load_schema
from cxrbs.core.errors import CxrbsError

__all__ = ["check_config", "config_file_problems", "model_kwarg_problems", "semantic_problems"]


def check_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH,
                 config_files: Sequence[str | Path] = (), *, deep: bool = True) -> None:
    """Schema first; only a config of the right shape is checked for the deeper mistakes.

    ``deep=False`` skips :func:`semantic_problems` (it imports torch): the workflow's job
    processes pass it, since the main process has checked the same config before any job.
    """
    problems = config_problems(config, load_schema(schema_path))
    if not problems and deep:
        problems = semantic_problems(config)
    if problems:
        where = f" in {', '.join(map(str, config_files))}" if config_files else ""
        raise CxrbsError(f"invalid configuration{where}:\n  " + "\n  ".join(problems)
                         + "\n(see workflow/schemas/config.schema.yaml for every key)")


def config_file_problems(path: str | os.PathLike[str], *, deep: bool = True,
                         schema_path: Path = SCHEMA_PATH) -> list[str]:
    """Every problem of a config file, one ``FILE:LINE:COL: problem`` line each ([] = valid).

    ``deep`` adds the checks beyond the schema that the workflow makes before any job (model
    arguments, patient regexes; it imports torch).
    """
    return config_file.config_file_problems(
        path, semantic=semantic_problems if deep else None, schema_path=schema_path)


# ----------------------------------------------------------------------------- beyond the schema


def model_kwarg_problems(model: str, kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The registry's check of configured model arguments (one check, beside the constructors);
    imported here lazily so that a schema-only check never imports torch."""
    from cxrbs.models.registry import model_kwarg_problems as check

    return check(model, kwargs)


def semantic_problems(config: dict[str, Any]) -> list[str]:
    """Mistakes the schema cannot see that would otherwise fail inside a job, one line each."""
    problems: list[str] = []
    datasets = config.get("datasets") or {}
    roles = {(spec or {}).get("role") for spec in datasets.values()}
    pretrained = (config.get("bs") or {}).get("pretrained")
    if pretrained:
        test_fraction = (config.get("bs") or {}).get("test_fraction", 0.2)
        problems += _pretrained_problems(str(pretrained), roles, test_fraction)
    elif "bs_train" not in roles:
        problems.append("config key datasets: no data set has role: bs_train; the "
                        "bone-suppression models need at least one (e.g. BSE-JSRT pairs)")
    for name, spec in sorted(datasets.items()):
        pattern = (spec or {}).get("patient_regex")
        if pattern is None:
            continue
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            problems.append(f"config key datasets.{name}.patient_regex: {pattern!r} is not a "
                            f"valid regular expression ({exc})")
            continue
        if compiled.groups < 1:
            problems.append(f"config key datasets.{name}.patient_regex: {pattern!r} needs a "
                            "group ( ) around the patient id, e.g. '^(\\d{8})_'")
    image_size = config.get("image_size")
    crop = ((config.get("bs") or {}).get("train") or {}).get("crop_size")
    if isinstance(crop, int) and isinstance(image_size, int) and crop > image_size:
        problems.append(f"config key bs.train.crop_size: {crop} is larger than image_size "
                        f"{image_size}; lower it or set it to null (whole images)")
    bs_archs = (config.get("bs") or {}).get("architectures") or {}
    cls = config.get("cls") or {}
    for tb in (cls.get("lung_crop") or {}).get("datasets") or []:
        spec = datasets.get(tb) or {}
        if spec.get("role") != "tb":
            problems.append(f"config key cls.lung_crop.datasets: {tb!r} is not a data set with "
                            "role: tb; list TB sets only")
        elif not spec.get("lung_masks"):
            problems.append(f"config key cls.lung_crop.datasets: {tb!r} has no lung masks; set "
                            f"datasets.{tb}.lung_masks or drop it from the list")
    targets = [(f"bs.architectures.{arch}", arch, kwargs)
               for arch, kwargs in sorted(bs_archs.items())]
    targets.append(("cls.model_kwargs", cls.get("model", "vgg16"), cls.get("model_kwargs") or {}))
    for key, model, kwargs in targets:
        for arg, text in model_kwarg_problems(model, kwargs or {}):
            problems.append(f"config key {key}{'.' + arg if arg else ''}: {text}")
    return problems


def _pretrained_problems(pretrained: str, roles: set[Any], test_fraction: Any) -> list[str]:
    """bs.pretrained must name a bundled model or an existing file, and have a set to score on:
    a bs_test set, or the bs_train set's within-institution test part (bs.test_fraction > 0)."""
    from cxrbs.bs.pretrained import pretrained_problem

    problems = []
    why = pretrained_problem(pretrained)
    if why is not None:
        problems.append(f"config key bs.pretrained: {why}")
    heldout = "bs_train" in roles and isinstance(test_fraction, (int, float)) and test_fraction > 0
    if "bs_test" not in roles and not heldout:
        problems.append("config key bs.pretrained: no data set has role bs_test (nor bs_train with "
                        "bs.test_fraction > 0) to evaluate the pretrained model on; add one "
                        "(e.g. dual-energy pairs)")
    return problems
