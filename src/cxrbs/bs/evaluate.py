"""Bone-suppression evaluation on paired test sets, model selection, and its explanation."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbs.data.stacks import read_manifest, read_stack
from cxrbs.core.errors import CxrbsError
from cxrbs.bs.metrics import evaluate_pairs, summarize
from cxrbs.bs.predict import load_bs_model, predict_images

log = logging.getLogger(__name__)

#: ``bsr`` is the bone suppression ratio as BS-LDM/GL-LCM compute it (one-sided: the identity
#: baseline already scores ~0.8); ``bsr_energy`` is the fraction of the bone-layer energy removed
#: (identity = 0), which tells more.
METRICS = ("mae", "psnr", "ssim", "ms_ssim", "bsr", "bsr_energy")
#: Whether a larger value is better, per metric.
HIGHER_IS_BETTER = {"mae": False, "psnr": True, "ssim": True, "ms_ssim": True, "bsr": True,
                    "bsr_energy": True}


def evaluate_model_on_pairs(model_path: Path | None, stack_path: Path, manifest_path: Path, *,
                            arch: str, test_set: str, batch_size: int = 4,
                            exclude_patients: Collection[str] = ()) -> pd.DataFrame:
    """Per-image metrics of one model (``model_path=None``: the identity baseline) on one test set.

    ``exclude_patients``: patient ids left out (a pretrained model's own training and validation
    patients, :func:`cxrbs.bs.pretrained.seen_patients`), so its scores stay held-out results.
    """
    pairs, names = _load_pairs(stack_path, manifest_path, exclude_patients=exclude_patients)
    predict = None
    if model_path is not None:
        model, _ = load_bs_model(model_path)
        predict = lambda batch: predict_images(model, batch, batch_size=batch_size)  # noqa: E731
    frame = evaluate_pairs(predict, pairs, names, batch_size=batch_size)
    frame.insert(0, "test_set", test_set)
    frame.insert(0, "arch", arch)
    return frame


def _load_pairs(stack_path: Path, manifest_path: Path, *,
                exclude_patients: Collection[str] = ()) -> tuple[np.ndarray, list[str]]:
    """A prepared paired test set (uint16 stack + manifest) or the validation / within-institution
    test pairs of the training set (float32 ``val.npy`` / ``test.npy`` + ``split.csv``);
    ``read_stack`` converts either by its dtype, and the names come from the table's rows."""
    pairs = read_stack(stack_path)
    if pairs.shape[1] != 2:
        raise CxrbsError(f"{stack_path} is not a paired test set (source and target)")
    table = pd.read_csv(manifest_path, dtype={"pair_id": str})
    if "split" in table:  # split.csv of cxrbs.bs.pairs: the rows of this part, in order
        part = "test" if Path(stack_path).stem == "test" else "val"  # test.npy / val.npy
        table = table[table["split"] == part]
    else:
        table = read_manifest(manifest_path)
    names = table["pair_id"].astype(str).tolist()
    if len(names) != len(pairs):
        raise CxrbsError(f"{stack_path} has {len(pairs)} pairs but {manifest_path} lists {len(names)}")
    if exclude_patients:
        keep = ~table["patient_id"].astype(str).isin({str(p) for p in exclude_patients}).to_numpy()
        if not keep.any():
            raise CxrbsError(f"every pair of {stack_path} is from a patient the pretrained model "
                             "was trained or validated on: nothing held out is left to score "
                             "(raise bs.test_fraction or drop bs.pretrained)")
        log.info("%s: %d of %d pairs left out (patients the pretrained model saw)", stack_path,
                 int((~keep).sum()), len(keep))
        pairs = pairs[np.flatnonzero(keep)]
        names = [n for n, k in zip(names, keep) if k]
    return pairs, names


def summarize_evaluations(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Long table: arch, test_set, metric, mean, sd, ci_low, ci_high, n."""
    per_image = pd.concat(frames, ignore_index=True)
    return summarize(per_image, by=["arch", "test_set"], metrics=list(METRICS))


#: The evaluation set models are selected on: the training institution's validation pairs.
SELECTION_SET = "validation"


def select_best(summary: pd.DataFrame, *, metric: str,
                selection_set: str = SELECTION_SET) -> dict[str, Any]:
    """The best architecture on ``metric`` over the validation pairs (never ``identity``).

    The decision only: :func:`cxrbs.bs.choice.write_choice` adds the checkpoint path and writes
    ``best.json``.

    Only the validation set (also the early-stopping set) is used: every test set in the summary
    is reported beside the choice but never informs it, so its scores stay unbiased test results.
    """
    if selection_set != SELECTION_SET:
        raise CxrbsError(f"models are selected on the validation pairs ({SELECTION_SET!r}) only; "
                         f"got {selection_set!r} (issue 12: never select on a test set)")
    rows = summary[(summary["metric"] == metric) & (summary["test_set"] == selection_set)]
    if rows.empty:
        raise CxrbsError(f"no {metric} results for the selection set {selection_set!r} in the "
                         "summary; check bs.select_metric in the config")
    models = rows[rows["arch"] != "identity"].set_index("arch")["mean"]
    if models.empty:
        raise CxrbsError("no trained model in the evaluation summary to select from")
    higher = HIGHER_IS_BETTER[metric]
    best = models.idxmax() if higher else models.idxmin()
    identity = rows[rows["arch"] == "identity"]["mean"]
    identity_value = float(identity.iloc[0]) if len(identity) else float("nan")
    gain = (models[best] - identity_value) * (1 if higher else -1)
    beats = bool(gain > 0)
    ranking = models.sort_values(ascending=not higher)
    test_sets = sorted(str(t) for t in summary["test_set"].unique() if t != selection_set)
    reason = (f"{best} has the {'highest' if higher else 'lowest'} mean {metric} on the "
              f"{selection_set} pairs ({models[best]:.4f}; ranking: "
              + ", ".join(f"{a} {v:.4f}" for a, v in ranking.items())
              + f"); identity baseline {identity_value:.4f}. Test sets "
              + (", ".join(test_sets) if test_sets else "(none)")
              + " were not used for the selection")
    if not beats:
        reason += (f". WARNING: no model beats the identity baseline on {metric}: bone suppression "
                   "by these models does not improve on leaving the image unchanged")
        log.warning("%s", reason)
    return {"arch": str(best), "metric": metric, "selection_set": selection_set,
            "test_set": selection_set, "test_sets_used_for_selection": False,
            "test_sets": test_sets, "value": float(models[best]),
            "identity_value": identity_value, "beats_identity": beats,
            "reason": reason,
            "ranking": {a: float(v) for a, v in ranking.items()}}
