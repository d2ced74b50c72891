"""How long the classifier training of a run will take, printed before its first job (issue 26).

Why: a real-data run on a CPU takes hours, and a researcher wants to know before starting it
whether it fits the afternoon. Training dominates (pretraining, then folds x arms x seeds
fine-tunes), so the estimate counts the image passes the config asks for and divides by a speed
*measured on this machine*: the ``images_per_s`` that earlier runs in this folder logged
(``results/cls/**/history.csv``, written by the one training loop), otherwise a few training steps
of the configured classifier timed here. Bone-suppression training is left out (bundled models
skip it; the paper-scale config runs on GPUs). The number is a guide, good to tens of percent:
data loading, evaluation passes and other jobs are not in it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbs.core.layout import Layout
from cxrbs.data.files import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: Cost of scoring an image (forward pass) relative to a training step (forward + backward).
EVAL_COST = 1 / 3
#: Below this many training image passes a run takes minutes: nothing is timed or printed.
SMALL_RUN_PASSES = 20_000


@dataclass(frozen=True)
class Stage:
    """Jobs of one kind, the training image passes (epochs x training images) of each, and the
    models they write (a job whose model exists is done)."""

    name: str
    models: tuple[Path, ...]
    passes_each: float
    threads: int

    @property
    def jobs(self) -> int:
        return len(self.models)

    @property
    def left(self) -> int:
        return sum(1 for p in self.models if not p.is_file())

    @property
    def histories(self) -> list[Path]:
        return [p.parent / "history.csv" for p in self.models]


def dataset_size(name: str, spec: Mapping[str, Any], workdir: Path) -> int | None:
    """Images of a data set: its manifest from an earlier run, its folder, or its synthetic n."""
    manifest = workdir / "results" / "data" / name / "manifest.csv"
    if manifest.is_file():
        return int(len(pd.read_csv(manifest, usecols=[0])))
    if spec.get("synthetic"):
        return int(spec["synthetic"]["n"])
    if spec.get("path"):
        folder = Path(spec["path"])
        folder = folder if folder.is_absolute() else workdir / folder
        if folder.is_dir():
            return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return None  # a download not fetched yet


def stages(config: Mapping[str, Any], workdir: Path, threads: Mapping[str, int] | None = None,
           ) -> tuple[list[Stage], list[str]]:
    """The training stages of a config and the data sets whose size is not known yet;
    ``threads`` gives a rule's threads where they differ from ``resources.train_threads``
    (``--set-threads pretrain_cls=2``)."""
    cls = config["cls"]
    datasets = config["datasets"]
    default = int(config.get("resources", {}).get("train_threads", 1))
    threads = dict(threads or {})
    unknown: list[str] = []

    def sizes(role: str) -> list[tuple[str, int]]:
        out = []
        for name, spec in sorted(datasets.items()):
            if spec.get("role") == role:
                n = dataset_size(name, spec, workdir)
                if n is None:
                    unknown.append(name)
                else:
                    out.append((name, n))
        return out

    layout = Layout(workdir / "results")
    found: list[Stage] = []
    pre = cls.get("pretrain") or {}
    n_pre = sum(n for _, n in sizes("pretrain"))
    if n_pre:
        val = float(pre.get("val_fraction", 0.15))
        keep = (1.0 - val) + val * EVAL_COST
        found.append(Stage("pretraining", (layout.cls_pretrain_model,),
                           float(pre.get("epochs", 0)) * n_pre * keep,
                           int(threads.get("pretrain_cls", default))))
    fine = cls.get("finetune") or {}
    folds, repeats = int(cls.get("folds", 4)), int(cls.get("repeats", 1))
    arms = list(cls.get("variants") or ["baseline", "bone_suppressed"])
    val = float(fine.get("val_fraction", 0.2))
    # the inner-validation images are scored every epoch: a forward pass, about a third of a step
    keep = (folds - 1) / folds * ((1.0 - val) + val * EVAL_COST)
    for name, n in sizes("tb"):
        models = tuple(layout.cls_fold_model(name, v, k, r) for v in arms for r in range(repeats)
                       for k in range(folds))
        found.append(Stage(f"fine-tuning {name}", models,
                           float(fine.get("epochs", 0)) * n * keep,
                           int(threads.get("finetune_cls", default))))
    return found, unknown


def logged_rate(histories: list[Path]) -> float | None:
    """Median ``images_per_s`` that earlier runs here logged for these jobs, if any."""
    rates = []
    for path in [p for p in histories if p.is_file()][:50]:
        try:
            rates += pd.read_csv(path, usecols=["images_per_s"])["images_per_s"].dropna().tolist()
        except (ValueError, OSError, pd.errors.EmptyDataError):
            continue
    return float(pd.Series(rates).median()) if rates else None


def timed_rate(config: Mapping[str, Any], threads: int, *, steps: int = 3) -> float:
    """Training images per second of the configured classifier, timed here (forward, backward,
    optimiser step on random inputs after one warm-up step) on ``threads`` threads."""
    import torch

    from cxrbs.models.registry import create_model

    cls = config["cls"]
    size = int(cls.get("input_size") or config.get("image_size", 256))
    batch = int((cls.get("finetune") or {}).get("batch_size", 8))
    model = create_model(str(cls["model"]), seed=0, **dict(cls.get("model_kwargs") or {}))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        x = torch.rand(batch, 3, size, size)
        y = torch.randint(0, 2, (batch,))
        start = 0.0
        for step in range(steps + 1):
            if step == 1:
                start = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return batch * steps / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def estimate_text(config: Mapping[str, Any], workdir: Path, cores: int, *,
                  threads: Mapping[str, int] | None = None,
                  time_here: bool = True) -> str | None:
    """One paragraph: each training stage's jobs, speed and wall time, and the total; None for
    a run of minutes (under SMALL_RUN_PASSES image passes)."""
    found, unknown = stages(config, workdir, threads)
    if sum(s.left * s.passes_each for s in found) < SMALL_RUN_PASSES:
        return None
    lines: list[str] = []
    total = 0.0
    for stage in found:
        if not stage.left:
            lines.append(f"  {stage.name}: all {stage.jobs} job(s) done")
            continue
        rate = logged_rate(stage.histories)
        source = "logged by earlier jobs here"
        if rate is None:
            if not time_here:
                continue
            rate, source = timed_rate(config, stage.threads), "timed now on random inputs"
        parallel = max(1, cores // max(1, stage.threads))
        wall = stage.passes_each / rate * math.ceil(stage.left / parallel)
        total += wall
        lines.append(f"  {stage.name}: {stage.left} of {stage.jobs} job(s) to run, "
                     f"{stage.passes_each:,.0f} image passes each at {rate:.1f} images/s "
                     f"({source}), {min(parallel, stage.left)} at a time: about {_hours(wall)}")
    if unknown:
        lines.append(f"  not counted (not downloaded yet): {', '.join(unknown)}")
    return "\n".join([f"Estimated training time left on {cores} core(s): about "
                      f"{_hours(total)} (training only; a guide, good to tens of percent)",
                      *lines])


def print_estimate(config: Mapping[str, Any], workdir: str | Path, cores: int | None,
                   threads: Mapping[str, int] | None = None) -> None:
    """For the workflow's ``onstart``: never fails the run, whatever goes wrong in here."""
    try:
        text = estimate_text(config, Path(workdir), int(cores or 1), threads=threads)
    except Exception as exc:  # an estimate must never stop a run
        log.warning("no duration estimate (%s)", exc)
        return
    if text:
        print(text, flush=True)
