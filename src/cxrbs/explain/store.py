"""The files the explain rule writes and the figures rule reads: names, columns, read/write.

One module owns the format on both sides, so the analysis (torch) and the plots (no torch) cannot
drift apart. Arrays go into ``.npz`` files keyed ``<kind>_<set>``; each has a CSV beside it whose
rows say what the arrays show, in the order the figures draw them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from cxrbs.core.atomic import atomic_path, write_csv, write_json
from cxrbs.core.layout import Layout

FEATURE_SPACE_COLUMNS = ["dataset", "variant", "fold", "n", "silhouette", "davies_bouldin"]
CRM_BOX_COLUMNS = ["dataset", "variant", "fold", "image", "method", "n_boxes", "mass_inside"]
BS_EXAMPLE_COLUMNS = ["test_set", "arch", "kind", "name", "psnr"]
CRM_CASE_COLUMNS = ["dataset", "fold", "image", "correct", "p_baseline", "p_bone_suppressed"]
TSNE_COLUMNS = ["dataset", "fold", "variant", "image", "label", "x", "y"]
NOTE_SECTIONS = ("bone_suppression", "relevance_maps", "feature_space")


@dataclass(frozen=True)
class ExplainFiles:
    """Every output of the explain rule; ``crm_boxes`` is None without expert boxes."""

    bs_examples: Path
    bs_examples_table: Path
    crm_maps: Path
    crm_cases: Path
    tsne: Path
    notes: Path
    feature_space: Path
    crm_boxes: Path | None = None

    @classmethod
    def of(cls, layout: Layout, *, with_boxes: bool = True) -> ExplainFiles:
        """The files at their workflow paths under ``layout``."""
        return cls(bs_examples=layout.bs_examples, bs_examples_table=layout.bs_examples_table,
                   crm_maps=layout.crm_maps, crm_cases=layout.crm_cases, tsne=layout.tsne,
                   notes=layout.explain_notes, feature_space=layout.feature_space,
                   crm_boxes=layout.crm_boxes if with_boxes else None)


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """All arrays of one kind in one compressed ``.npz`` (an empty file where there are none)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            named = cast(dict[str, Any], {k: np.asarray(v) for k, v in arrays.items()})
            np.savez_compressed(fh, **named)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_table(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    write_csv(path, pd.DataFrame(rows, columns=columns))


def write_notes(path: Path, notes: Mapping[str, list[str]]) -> None:
    write_json(path, {s: list(notes.get(s, [])) for s in NOTE_SECTIONS})


def read_notes(path: Path) -> dict[str, list[str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {str(k): [str(n) for n in v] for k, v in data.items()}
