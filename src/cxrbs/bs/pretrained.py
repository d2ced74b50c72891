"""A pretrained bone-suppression model in place of training (config key ``bs.pretrained``).

Users without JSRT access cannot train; with ``bs.pretrained`` (a bundled model's name or a
checkpoint path) the workflow skips training, copies that model to where a trained one would be
(``results/bs/models/pretrained/best.pt``) and evaluates, "selects" and applies it like any other.
There is nothing to select: the one candidate is recorded as such, so neither best.json nor the
report can be read as a selection on validation data.

Resolving a name is torch-free (the config check runs it at workflow start); copying verifies
a bundled model's sha256 and that the file rebuilds a bone-suppression model, before anything is
written, so a wrong file fails in this one job with one line naming it.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbs.bs import bundled
from cxrbs.core.atomic import atomic_path, write_json
from cxrbs.core.errors import CxrbsError

log = logging.getLogger(__name__)

#: The architecture slot (``results/bs/models/<arch>/``) a pretrained model takes.
ARCH = "pretrained"
KEY = "bs.pretrained"


def _bundled_names(directory: Path | None) -> str:
    return ", ".join(m.name for m in bundled.list_bundled(directory)) or "none"


def pretrained_problem(value: str, directory: Path | None = None) -> str | None:
    """Why ``value`` names no usable model (neither bundled nor an existing file), else None."""
    if bundled.is_bundled_name(value, directory):
        weights = bundled.get_bundled(value, directory).weights
        return None if weights.is_file() else (f"bundled model {value}: its file {weights} is "
                                               "missing; reinstall cxrbs")
    if Path(value).expanduser().is_file():
        return None
    return (f"{value!r} is neither a bundled model (bundled: {_bundled_names(directory)}; "
            "`cxrbs models` lists them) nor an existing checkpoint file; give a bundled name or "
            "the path of a best.pt written by cxrbs train-bs")


def resolve_pretrained(value: str, directory: Path | None = None) -> Path:
    """The weight file ``value`` names: a bundled model's file (not yet verified) or the path."""
    if bundled.is_bundled_name(value, directory):
        return bundled.get_bundled(value, directory).weights
    problem = pretrained_problem(value, directory)
    if problem is not None:
        raise CxrbsError(f"config key {KEY}: {problem}")
    return Path(value).expanduser()


def pretrained_split(value: str | None, directory: Path | None = None) -> Path | None:
    """The split file (``name,patient_id,split``) shipped beside the model ``value`` names: a
    bundled model's ``<name>.split.csv`` (beside its card), or ``<stem>.split.csv`` beside a
    checkpoint path; None where there is none (its training patients are then unknown)."""
    if not value:
        return None
    if bundled.is_bundled_name(value, directory):
        path = bundled.get_bundled(value, directory).card.with_suffix(".split.csv")
    else:
        path = Path(value).expanduser().with_suffix(".split.csv")
    return path if path.is_file() else None


def seen_patients(split_csv: Path | str | None) -> set[str]:
    """The patients a pretrained model was trained or validated (early-stopped) on, from its
    split file; they are removed from the workflow's ``heldout_test`` and validation pairs."""
    if not split_csv:
        return set()
    table = pd.read_csv(split_csv, dtype={"patient_id": str})
    if not {"patient_id", "split"} <= set(table.columns):
        raise CxrbsError(f"{split_csv} is not a model split file (needs columns patient_id, split)")
    seen = table["split"].astype(str).isin(["train", "val"])
    return set(table.loc[seen, "patient_id"].dropna().astype(str))


def install_pretrained(value: str, dest: Path, info_path: Path, *, image_size: int | None = None,
                       directory: Path | None = None) -> dict[str, Any]:
    """Copy the verified checkpoint to ``dest`` and describe it in ``info_path`` (JSON).

    A bundled model is checked against its recorded sha256; every model must load as a
    bone-suppression checkpoint. Both checks run on the source, so errors name the user's file.
    """
    from cxrbs.models.checkpoint import load_checkpoint, sha256_of  # torch only in the job

    is_bundled = bundled.is_bundled_name(value, directory)
    card = None
    if is_bundled:
        model = bundled.get_bundled(value, directory)
        source = bundled.verified_weights(model)
        card = str(model.card)
    else:
        source = resolve_pretrained(value, directory)
    _, meta = load_checkpoint(source, "bs", purpose=f"config key {KEY}")
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    info = {
        "pretrained": value, "bundled": is_bundled, "source": str(source), "card": card,
        "sha256": sha256_of(dest), "model_name": meta.get("model_name"),
        "model_kwargs": meta.get("model_kwargs"), "input_size": meta.get("input_size"),
        "output_mode": meta.get("output_mode"), "image_size": image_size,
    }
    if image_size is not None and meta.get("input_size") not in (None, image_size):
        log.warning("pretrained model %s was trained at %s px; this workflow's images are %s px",
                    value, meta.get("input_size"), image_size)
    write_json(info_path, info)
    log.info("pretrained model %s (%s) copied to %s; bone-suppression training skipped (%s)",
             value, source, dest, KEY)
    return info


def pretrained_choice(summary: pd.DataFrame, info: Mapping[str, Any], *,
                      metric: str) -> dict[str, Any]:
    """best.json for a pretrained model: the only candidate, so nothing is selected.

    The decision only, as :func:`cxrbs.bs.evaluate.select_best`'s:
    :func:`cxrbs.bs.choice.write_choice` writes it.

    ``value``/``identity_value`` are those of the first evaluated set (a bone_suppression test set
    before the within-institution ``heldout_test``); ``per_set`` has every set.
    """
    from cxrbs.bs.evaluate import HIGHER_IS_BETTER

    rows = summary[summary["metric"] == metric]
    sets = sorted(str(t) for t in rows["test_set"].unique())
    sets = [t for t in sets if t != "heldout_test"] + [t for t in sets if t == "heldout_test"]
    if not sets:
        raise CxrbsError(f"no {metric} results in the evaluation summary; check bs.select_metric "
                         "and that a data set has role bs_test")
    higher = HIGHER_IS_BETTER[metric]
    per_set: dict[str, dict[str, Any]] = {}
    for test in sets:
        def mean(arch: str, test: str = test) -> float:
            found = rows[(rows["test_set"] == test) & (rows["arch"] == arch)]["mean"]
            return float(found.iloc[0]) if len(found) else math.nan

        value, ident = mean(ARCH), mean("identity")
        per_set[test] = {"value": value, "identity_value": ident,
                         "beats_identity": bool((value - ident) * (1 if higher else -1) > 0)}
    name = str(info.get("pretrained"))
    what = f"bundled model {name}" if info.get("bundled") else f"checkpoint file {name}"
    reason = (f"pretrained model {name} used; bone-suppression training skipped ({KEY}): "
              f"{what} is the only candidate, nothing was selected. Mean {metric} "
              + "; ".join(f"{t} {v['value']:.4f} (identity {v['identity_value']:.4f})"
                          for t, v in per_set.items()))
    size, trained = info.get("image_size"), info.get("input_size")
    if size is not None and trained not in (None, size):
        reason += f". It was trained at {trained} px; these images are {size} px"
    beats = all(v["beats_identity"] for v in per_set.values())
    if not beats:
        worse = ", ".join(t for t, v in per_set.items() if not v["beats_identity"])
        reason += (f". WARNING: it does not beat the identity baseline on {metric} on {worse}")
        log.warning("%s", reason)
    first = per_set[sets[0]]
    return {"arch": ARCH, "metric": metric, "selection_set": None, "test_set": sets[0],
            "test_sets_used_for_selection": False, "test_sets": sets,
            "value": first["value"], "identity_value": first["identity_value"],
            "beats_identity": beats, "per_set": per_set,
            "reason": reason,
            "ranking": {ARCH: first["value"]}, "pretrained": name, "training_skipped": True,
            "pretrained_model": dict(info)}
