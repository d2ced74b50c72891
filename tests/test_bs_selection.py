"""Bone-suppression model selection on validation data only (issue 12).

The training institution's pairs are split by patient into train / validation / test; the model is
selected (and stopped early) on validation, while the within-institution test part and every
cross-institution set are only reported. A config asking to select on a test set is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxrbs.bs.choice import write_choice
from cxrbs.bs.evaluate import SELECTION_SET, select_best
from cxrbs.bs.pairs import split_pairs
from cxrbs.config_checks import check_config
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import Layout
from cxrbs.data.splits import patient_split

ROOT = Path(__file__).resolve().parents[1]


def test_split_pairs_keeps_patients_whole_and_parts_disjoint() -> None:
    keys = np.repeat([f"p{i:02d}" for i in range(30)], 2)  # two pairs per patient
    split = split_pairs(keys, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert set(split) == {"train", "val", "test"}
    for part in ("train", "val", "test"):
        others = set(keys[split != part])
        assert not set(keys[split == part]) & others, part
    n_pat = {part: len(set(keys[split == part])) for part in ("val", "test")}
    assert n_pat == {"val": 6, "test": 6}


def test_split_pairs_without_test_part_is_the_old_validation_split() -> None:
    keys = np.array([f"p{i:02d}" for i in range(25)])
    split = split_pairs(keys, val_fraction=0.2, test_fraction=0.0, seed=7)
    np.testing.assert_array_equal(split == "val", patient_split(keys, val_fraction=0.2, seed=7))
    assert "test" not in set(split)
    with pytest.raises(CxrbsError, match="test_fraction"):
        split_pairs(keys, val_fraction=0.5, test_fraction=0.5, seed=0)


def _summary() -> pd.DataFrame:
    """ae_bs is best on validation, convnet_bs best on the test sets."""
    rows = []
    for test_set, scores in ((SELECTION_SET, {"ae_bs": 31.0, "convnet_bs": 30.0}),
                             ("heldout_test", {"ae_bs": 29.0, "convnet_bs": 33.0}),
                             ("des", {"ae_bs": 28.0, "convnet_bs": 34.0})):
        for arch, value in {**scores, "identity": 29.5}.items():
            rows.append({"arch": arch, "test_set": test_set, "metric": "psnr", "mean": value,
                         "sd": 1.0, "ci_low": value - 1, "ci_high": value + 1, "n": 5})
    return pd.DataFrame(rows)


def test_select_best_uses_validation_only_and_says_so() -> None:
    choice = select_best(_summary(), metric="psnr")
    assert choice["arch"] == "ae_bs"  # convnet_bs wins every test set, which must not matter
    assert choice["selection_set"] == SELECTION_SET
    assert choice["test_sets_used_for_selection"] is False
    assert choice["test_sets"] == ["des", "heldout_test"]
    assert "were not used for the selection" in choice["reason"]
    with pytest.raises(CxrbsError, match="never select on a test set"):
        select_best(_summary(), metric="psnr", selection_set="des")


def test_write_choice_writes_best_json_whole(tmp_path: Path) -> None:
    """One writer: the decision plus the checkpoint it names, relative to the workflow folder."""
    layout = Layout(tmp_path / "results")
    choice = write_choice(layout.bs_best, _summary(), metric="psnr")
    assert choice == {**select_best(_summary(), metric="psnr"),
                      "checkpoint": "results/bs/models/ae_bs/best.pt"}
    text = layout.bs_best.read_text(encoding="utf-8")
    assert json.loads(text) == choice
    assert text == json.dumps(choice, indent=2, sort_keys=True) + "\n"
    assert layout.chosen_checkpoint() == layout.bs_checkpoint("ae_bs")


def test_config_refuses_select_test_set_with_the_reason() -> None:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    check_config(config)
    config["bs"]["select_test_set"] = "des"
    with pytest.raises(CxrbsError) as err:
        check_config(config)
    message = str(err.value)
    assert ("bs.select_test_set was removed: models are selected on validation data only "
            "(issue 12)") in message
    assert "unknown key" not in message
