"""Bone-suppression models shipped inside the package, so users can suppress without JSRT access.

Each bundled model is a checkpoint in the one cxrbs format beside a model card (Markdown), a
machine-readable ``<name>.metadata.json`` (input/output spec, data and licence, evaluation
metrics; written by :mod:`cxrbs.bs.package`, the workflow's ``bundle`` rule) and an entry in
``cxrbs/bundled/models.json`` holding its sha256 and the card's headline figures. The
checksum is verified on every load: a corrupt or tampered weight file fails with one line naming
the file and both checksums, never with a traceback from the unpickler.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrbs.core.errors import CxrbsError

# CXRBS_BUNDLED_DIR points a site (or a test) at another folder of bundled models.
BUNDLED_DIR = Path(os.environ.get("CXRBS_BUNDLED_DIR") or Path(__file__).resolve().parents[1] / "bundled")
INDEX_NAME = "models.json"


@dataclass(frozen=True)
class BundledModel:
    """One entry of the bundled-model index."""

    name: str
    weights: Path
    sha256: str
    card: Path
    default: bool = False
    figures: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_file: Path | None = None


def _index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CxrbsError(f"bundled model index {path} is unreadable ({exc}): reinstall cxrbs") from exc
    if not isinstance(data, dict):
        raise CxrbsError(f"bundled model index {path} is not a JSON object: reinstall cxrbs")
    return data


def _metadata(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CxrbsError(f"bundled model metadata {path} is unreadable ({exc}): reinstall cxrbs") \
            from exc
    if not isinstance(data, dict):
        raise CxrbsError(f"bundled model metadata {path} is not a JSON object: reinstall cxrbs")
    return data


def list_bundled(directory: Path | None = None) -> list[BundledModel]:
    """Every bundled model, default first."""
    directory = directory or BUNDLED_DIR
    models = []
    for name, entry in sorted(_index(directory).items()):
        try:
            meta_file = directory / str(entry["metadata"]) if entry.get("metadata") else None
            meta = _metadata(meta_file) if meta_file is not None else {}
            models.append(BundledModel(
                name=name, weights=directory / str(entry["file"]), sha256=str(entry["sha256"]),
                card=directory / str(entry["card"]), default=bool(entry.get("default", False)),
                figures=dict(entry.get("figures", {})),
                description=str(meta.get("description") or entry.get("description", "")),
                metadata=meta, metadata_file=meta_file,
            ))
        except (KeyError, TypeError) as exc:
            raise CxrbsError(f"bundled model {name!r} in {directory / INDEX_NAME} lacks {exc}: "
                             "reinstall cxrbs") from exc
    return sorted(models, key=lambda m: (not m.default, m.name))


def default_bundled(directory: Path | None = None) -> BundledModel | None:
    models = list_bundled(directory)
    return models[0] if models else None


def get_bundled(name: str, directory: Path | None = None) -> BundledModel:
    models = {m.name: m for m in list_bundled(directory)}
    if name not in models:
        known = ", ".join(models) or "none"
        raise CxrbsError(f"no bundled model named {name!r} (bundled: {known}); "
                         "`cxrbs models` lists them")
    return models[name]


def is_bundled_name(value: str | Path, directory: Path | None = None) -> bool:
    return str(value) in {m.name for m in list_bundled(directory)}


def verified_weights(model: BundledModel) -> Path:
    """The weight file, after checking it exists and its sha256 is the one recorded at release."""
    if not model.weights.is_file():
        raise CxrbsError(f"bundled model file {model.weights} is missing: reinstall cxrbs")
    from cxrbs.models.checkpoint import sha256_of  # torch only when a model is used

    actual = sha256_of(model.weights)
    if actual != model.sha256:
        raise CxrbsError(
            f"bundled model file {model.weights} fails its checksum (sha256 {actual}, expected "
            f"{model.sha256}): the file is corrupt or was altered; reinstall cxrbs"
        )
    return model.weights


def describe(model: BundledModel) -> str:
    """One paragraph for `cxrbs models`: name, what it is, the card's headline figures."""
    meta = model.metadata
    version = f", version {meta['version']}" if meta.get("version") else ""
    lines = [f"{model.name}{'  (default)' if model.default else ''}{version}"]
    if model.description:
        lines.append(f"  {model.description}")
    if meta.get("intended_use"):
        lines.append(f"  intended use: {meta['intended_use']}")
    spec = meta.get("network_data_format", {}).get("inputs", {}).get("image", {})
    if spec:
        lines.append(f"  input: {spec.get('num_channels')} channel, "
                     f"{'x'.join(str(s) for s in spec.get('spatial_shape', []))} at the network, "
                     f"{spec.get('dtype')} in {spec.get('value_range')}, {spec.get('polarity')}")
    if meta.get("data_license"):
        lines.append(f"  licence: {meta['data_license']}")
    for key, value in model.figures.items():
        lines.append(f"  {key}: {value}")
    lines.append(f"  weights: {model.weights}  sha256 {model.sha256[:16]}…")
    lines.append(f"  model card: {model.card}")
    if model.metadata_file is not None:
        lines.append(f"  metadata: {model.metadata_file}")
    return "\n".join(lines)
