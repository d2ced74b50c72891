"""One checkpoint format for every model, and one loader.

A checkpoint carries what inference needs to treat an image as training did: the architecture
(name + kwargs), the weights, the image side it was trained at, the preprocessing percentiles,
the output mode (bone suppression) or class names (classifiers), the seed and the software
versions. Files written before this format (bone suppression: ``model_state`` + metadata,
format 1; classifiers: ``state_dict``, format ``cxrbs-classifier-1``) still load; what they did
not record takes the values that were fixed then (1/99 percentiles, 256 px bone suppression).

Errors are one line naming the file: a picture passed where a model belongs, a model of the
other kind, a checksum that does not match.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxrbs.core import atomic
from cxrbs.core.errors import CxrbsError
from cxrbs.core.hashing import sha256_file
from cxrbs.core.config import HIGH_PCT, LOW_PCT

FORMAT = "cxrbs-checkpoint-2"
KINDS = ("bs", "cls")
#: Weights key of the format; ``state_dict`` was the classifiers' key in their first format.
WEIGHTS = "model_state"
LEGACY_WEIGHTS = "state_dict"
DEFAULT_CLASS_NAMES = ("normal", "abnormal")
#: Keys of ``last.pt`` that only resuming needs; never part of the returned metadata.
TRAINING_STATE = ("model_state", "state_dict", "optimizer_state", "scheduler_state",
                  "scaler_state", "torch_rng")
_WRITER = {"bs": "cxrbs train-bs", "cls": "cxrbs train-cls"}
_NAME = {"bs": "bone-suppression", "cls": "classifier"}
_NEEDS = {
    "bs": "a bone-suppression checkpoint (cxrbs train-bs, or the bundled model)",
    "cls": "a classifier checkpoint (cxrbs train-cls, or the workflow's model.pt)",
}


def header(*, kind: str, model_name: str, model_kwargs: Mapping[str, Any], input_size: Any,
           seed: int, versions: Mapping[str, Any], low_pct: float = LOW_PCT, high_pct: float = HIGH_PCT,
           output_mode: str | None = None,
           class_names: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The fields every checkpoint has, in plain types (lists, not tuples) for ``weights_only``."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {
        "format": FORMAT,
        "kind": kind,
        "model_name": str(model_name),
        "model_kwargs": dict(model_kwargs),
        "input_size": input_size,
        "low_pct": float(low_pct),
        "high_pct": float(high_pct),
        "output_mode": output_mode,
        "class_names": list(class_names) if class_names is not None else None,
        "seed": int(seed),
        "versions": dict(versions),
    }


def save_checkpoint(path: str | Path, meta: Mapping[str, Any],
                    model_state: Mapping[str, torch.Tensor]) -> None:
    """Write ``meta`` (from :func:`header`, plus training metadata) and the weights atomically."""
    atomic.save_torch(path, {**meta, WEIGHTS: dict(model_state)})


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (:func:`cxrbs.core.hashing.sha256_file`, one implementation)."""
    return sha256_file(path)


def _foreign_type(path: Path) -> str | None:
    """What the file is when it is certainly not a torch checkpoint, else None."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image"
    if head[128:132] == b"DICM":
        return "a DICOM file"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith("data.pkl") for n in zf.namelist()):
                    return None
        except zipfile.BadZipFile:
            return "a damaged zip archive"
        return "a zip archive"
    if not head or head[:1] != b"\x80":  # torch's legacy format is a pickle
        return "not a torch file"
    return None


def _hint(path: Path) -> str:
    """What to do about an unusable checkpoint: inside a workflow job, which rule rebuilds it
    (the workflow wrote it); on the command line, which command writes one."""
    from cxrbs.core.layout import writer_rule
    from cxrbs.core.snakemake_glue import workflow_job

    if workflow_job() is None:
        return "pass the .pt file written by cxrbs train-bs / train-cls"
    rule = writer_rule(path)
    if rule is None:
        return (f"replace {path} with a good copy, or delete it and run snakemake again to "
                "rebuild what needs it")
    return (f"rebuild it with `snakemake --forcerun {rule}` (or delete {path} and run snakemake "
            "again: only what it feeds reruns)")


def read_checkpoint(path: str | Path, *, sha256: str | None = None,
                    device: str | torch.device = "cpu", expect: str | None = None) -> dict[str, Any]:
    """The raw checkpoint dict (weights included), checked and normalised to this format."""
    path = Path(path)
    if not path.is_file():
        raise CxrbsError(f"checkpoint {path} does not exist: check the path, or train the model "
                         "first (cxrbs train-bs / train-cls)")
    foreign = _foreign_type(path)
    if foreign is not None:
        what = foreign if foreign.startswith("a") else "not a torch file"
        raise CxrbsError(f"{path} is {what}, not a cxrbs checkpoint: {_hint(path)}")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise CxrbsError(f"checkpoint {path} has sha256 {actual}, expected {sha256}: the file "
                             "is another or a damaged copy; fetch the expected file again")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling raises many types for a damaged file
        why = ("it holds Python objects a cxrbs checkpoint never contains"
               if "weights only" in str(exc).lower() else "it is damaged or incomplete")
        raise CxrbsError(f"{path} is not a readable cxrbs checkpoint ({type(exc).__name__}: "
                         f"{why}): {_hint(path)}") from exc
    if not isinstance(ckpt, dict) or "model_name" not in ckpt or not (
        WEIGHTS in ckpt or LEGACY_WEIGHTS in ckpt
    ):
        what = _NAME.get(expect or "", "cxrbs")
        raise CxrbsError(f"{path} is a torch file but not a {what} checkpoint written by cxrbs "
                         f"(no model_name and weights): {_hint(path)}")
    return _normalise(ckpt)


def _normalise(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Fill the fields of this format in a checkpoint of an earlier one."""
    from cxrbs.models import model_kind

    out = dict(ckpt)
    if WEIGHTS not in out:
        out[WEIGHTS] = out[LEGACY_WEIGHTS]
    kind = out.get("kind")
    if kind not in KINDS:
        try:
            kind = model_kind(str(out["model_name"]))
        except CxrbsError:
            kind = "cls" if str(out.get("format", "")).startswith("cxrbs-classifier") else "bs"
    out["kind"] = kind
    out.setdefault("low_pct", 1.0)
    out.setdefault("high_pct", HIGH_PCT)
    if out.get("input_size") is None:
        out["input_size"] = _legacy_input_size(out)
    if kind == "bs":
        out.setdefault("output_mode", dict(out.get("model_kwargs") or {}).get("output", "direct"))
        out.setdefault("class_names", None)
    else:
        out.setdefault("output_mode", None)
        if out.get("class_names") is None:
            out["class_names"] = list(DEFAULT_CLASS_NAMES)
    return out


def _legacy_input_size(ckpt: Mapping[str, Any]) -> Any:
    if ckpt.get("image_size"):
        return ckpt["image_size"]
    data = ckpt.get("data") or {}
    shape = data.get("val_shape") or data.get("train_shape")
    if shape and len(shape) == 4 and shape[2] == shape[3]:
        return int(shape[2])
    return 256


def load_checkpoint(path: str | Path, expect: str | None = None, *, sha256: str | None = None,
                    device: str | torch.device = "cpu",
                    purpose: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, metadata without weights or training state).

    ``expect`` ("bs"/"cls") refuses a checkpoint of the other kind; ``purpose`` names the command
    in that message (e.g. "`suppress`").
    """
    from cxrbs.core.snakemake_glue import workflow_job
    from cxrbs.models import create_model

    path = Path(path)
    ckpt = read_checkpoint(path, sha256=sha256, device="cpu", expect=expect)
    kind = ckpt["kind"]
    if expect is not None and kind != expect:
        who = purpose or "this step"
        raise CxrbsError(f"{path} is a {_NAME[kind]} checkpoint (written by {_WRITER[kind]}); "
                         f"{who} needs {_NEEDS[expect]}")
    name, kwargs = str(ckpt["model_name"]), dict(ckpt.get("model_kwargs") or {})
    try:
        model = create_model(name, **kwargs)
        model.load_state_dict(ckpt[WEIGHTS])
    except (CxrbsError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        advice = ("train it again with this version of cxrbs" if workflow_job() is None
                  else _hint(path))
        raise CxrbsError(f"checkpoint {path} does not rebuild its model {name!r} {kwargs} "
                         f"({type(exc).__name__}: {first}): {advice}") from exc
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    meta["path"] = str(path)
    return model, meta
