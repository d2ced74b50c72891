"""Collapse is judged only once training had a chance; a one-class validation split is named.

Issue 15: a one-epoch smoke run of the study config stopped with "training collapsed to a constant
prediction" (once at val AUC 1.00), and a one-class validation split (AUC NaN) was reported as a
collapse too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cxrbs.cls.train import ClsTrainConfig, _looks_constant, train_classifier
from cxrbs.core.errors import CxrbsError
from cxrbs.models import registry
from test_classify import ConstantLogits, blob_data


def config(**kw: Any) -> ClsTrainConfig:
    base = dict(epochs=3, batch_size=8, optimizer="adamw", lr=1e-2, val_fraction=0.25, seed=1,
                threads=1, device="cpu", augment={"rotation": 0, "shift": 0, "hflip": False})
    return ClsTrainConfig(**{**base, **kw})


class TinyRanker(nn.Module):
    """Probabilities squeezed to 0.5 ± 1e-5 but ranked by the upper half's brightness (the blob):
    near-constant output with a perfect AUC, as a network a few steps from random weights gives."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x: Tensor) -> Tensor:
        h = x.shape[2] // 2
        score = (x[:, :, :h].mean(dim=(1, 2, 3)) - x[:, :, h:].mean(dim=(1, 2, 3))).detach()
        out = self.bias - self.bias.detach()  # trainable, yet the output stays where it is
        return out + torch.stack([torch.zeros_like(score), 1e-3 * score], dim=1)


@pytest.fixture()
def models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._REGISTRY, "constant_test", registry._Entry(ConstantLogits, "cls"))
    monkeypatch.setitem(registry._REGISTRY, "ranker_test", registry._Entry(TinyRanker, "cls"))


@pytest.fixture(scope="module")
def data():
    return blob_data()


def test_high_auc_is_never_a_collapse() -> None:
    y = np.array([0, 1] * 10)
    squeezed = 0.5 + 1e-7 * y  # std far below the constant threshold, AUC 1.00
    assert not _looks_constant(squeezed, 1.0)
    assert _looks_constant(np.full(20, 0.5), 0.5)  # a real constant still is one


def test_near_constant_ranker_trains_to_the_end(data, tmp_path: Path, models: None) -> None:
    imgs, y, ids = data
    summary = train_classifier("ranker_test", {}, imgs, y, ids, config(collapse_patience=1),
                               tmp_path, progress=False, stage="finetune")
    assert summary["best_val_auc"] == pytest.approx(1.0)
    assert (tmp_path / "model.pt").exists()


def test_one_short_epoch_is_not_judged(data, tmp_path: Path, models: None,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """The smoke run: one epoch of one step, constant output; kept, with a warning."""
    imgs, y, ids = data
    cfg = config(epochs=1, steps_per_epoch=1, collapse_patience=1)
    with caplog.at_level(logging.WARNING, logger="cxrbs.cls.train"):
        train_classifier("constant_test", {}, imgs, y, ids, cfg, tmp_path, progress=False,
                         stage="finetune")
    assert (tmp_path / "model.pt").exists()
    assert any("too short to judge a collapse" in r.getMessage() for r in caplog.records)


def test_warm_up_epochs_are_not_judged(data, tmp_path: Path, models: None) -> None:
    imgs, y, ids = data
    cfg = config(epochs=6, warmup_epochs=2, collapse_patience=1, early_stopping_patience=6)
    with pytest.raises(CxrbsError, match=r"collapsed.*for 1 epochs"):
        train_classifier("constant_test", {}, imgs, y, ids, cfg, tmp_path, progress=False)
    history = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert len(history) - 1 == 3  # epochs 1-2 (warm-up) not judged; fires on epoch 3


def test_collapse_after_a_chance_is_still_refused(data, tmp_path: Path, models: None) -> None:
    imgs, y, ids = data
    cfg = config(epochs=4, collapse_patience=1, early_stopping_patience=4)
    with pytest.raises(CxrbsError, match="collapsed to a constant prediction"):
        train_classifier("constant_test", {}, imgs, y, ids, cfg, tmp_path, progress=False)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(("stage", "where", "fix"), [
    ("finetune", "cls.finetune", "cls.finetune.val_fraction"),
    (None, "train-cls", "--val-fraction"),
], ids=["finetune", "train-cls"])
def test_one_class_validation_split_is_named_before_training(
    data, tmp_path: Path, models: None, stage: str | None, where: str, fix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Named up front as what it is (not a collapse); training still runs on tiny samples."""
    imgs, y, ids = data
    val = np.isin(ids, ["1", "3", "5"])  # odd patients: class 1 only, 6 images
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="cxrbs.cls.train"):
        train_classifier("constant_test", {}, imgs, y, ids, config(), out, val_mask=val,
                         progress=False, stage=stage)
    lines = [r.getMessage() for r in caplog.records if "validation split" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "collapse is judged" in lines[0]
    assert lines[0].startswith(f"validation split of {where} has only class 1 (abnormal) (6 images)")
    assert fix in lines[0] and "check the" in lines[0]
    assert (out / "model.pt").is_file()  # a constant model on a one-class split is not refused
