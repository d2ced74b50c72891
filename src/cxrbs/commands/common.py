"""Pieces several commands share: the study's settings, error lines, data-set preparation."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxrbs.core.errors import CxrbsError
from cxrbs.core.config import HIGH_PCT, LOW_PCT

log = logging.getLogger("cxrbs")

EXIT_USER_ERROR = 2
#: Model arguments the study's config (config/config.yaml, bs.architectures) sets per architecture.
BS_ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet_bs": {"output": "residual", "width": 64, "n_blocks": 16},
    "convnet_bs": {"output": "direct", "l1": 1.0e-9},
    "ae_bs": {"output": "direct"},
    "rl_bs": {"output": "direct"},
}
#: The study's preprocessing (config: preprocess.low_percentile / high_percentile).

#: Workflow wording that deeper package code uses, and what it means on the command line.
_CLI_WORDING = {
    " (or set source_dir/target_dir in the config)": "",
    "lower crop_size or set it to null": "lower --crop-size or leave it out (whole images)",
    "downscale it or raise the config key max_image_pixels": "downscale it first",
    "check the dataset's classes mapping in the config": "check --classes (folder names)",
    "fix the file name or the dataset's patient_regex in the config":
        "fix the file name or --patient-regex",
    "does not match patient_regex": "does not match --patient-regex",
    "check the path in your config": "check the path",
}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    for workflow_words, cli_words in _CLI_WORDING.items():
        text = text.replace(workflow_words, cli_words)
    return text


def report(exc: BaseException) -> None:
    print(f"cxrbs: error: {one_line(exc)}", file=sys.stderr, flush=True)


def dataset_names(folders: Sequence[Path]) -> list[str]:
    """Folder names as data set names, made unique (two folders called 'pairs' stay apart)."""
    names: list[str] = []
    for folder in folders:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(folder).resolve().name) or "data"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def prepare_sets(folders: Sequence[Path], data_dir: Path, *, layout: str, size: int,
                 progress: bool, **options: Any) -> list[tuple[str, Path, Path]]:
    """Manifest + preprocessed stack per folder, as the workflow's data stage builds them."""
    from cxrbs.core.atomic import write_csv
    from cxrbs.data.manifests import build_manifest
    from cxrbs.data.stacks import build_stack

    prepared = []
    for folder, name in zip(folders, dataset_names(folders), strict=True):
        manifest = build_manifest(Path(folder), layout, **options)
        stack = build_stack(manifest, data_dir / name / "images.npy", size=size, low_pct=LOW_PCT,
                            high_pct=HIGH_PCT, progress=progress)
        write_csv(data_dir / name / "manifest.csv", manifest)
        log.info("%s: %d image(s) from %s", name, len(manifest), folder)
        prepared.append((name, data_dir / name / "manifest.csv", stack))
    return prepared
