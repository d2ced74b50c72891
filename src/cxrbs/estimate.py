"""How long the classifier training of a run will take, printed before its first job (issue 26).

Why: a real-data run on a CPU takes hours, and a researcher wants to know before starting it
whether it fits the afternoon. Training dominates (pretraining, then folds x arms x seeds
fine-tunes), so the estimate counts the image passes the config asks for and divides by a speed
*measured on this machine*: the ``images_per_s`` that earlier runs in this folder logged
(``results/cls/**/history.csv``, written by the one training loop), otherwise a few training steps
of the configured classifier timed here (with the configured precision and memory layout). A job
counts as done when its model exists *and* was trained with the configured recipe (the
``settings`` in its ``train_summary.json``), so a changed recipe is counted as the reruns it
causes, and only histories of the configured recipe give the speed. Bone-suppression training is left out (bundled models
skip it; the paper-scale config runs on GPUs). The number is a guide, good to tens of percent:
data loading, evaluation passes and other jobs are not in it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    """Jobs of one kind, the training image passes (epochs x training images) of each, the
    models they write and the configured training settings (a job whose model exists and was
    trained with these settings is done)."""

    name: str
    models: tuple[Path, ...]
    passes_each: float
    threads: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return len(self.models)

    @property
    def left(self) -> int:
        return sum(1 for p in self.models
                   if not p.is_file() or same_recipe(p.parent, self.settings) is False)

    @property
    def histories(self) -> list[Path]:
        """Histories of jobs trained, or being trained, with the configured settings."""
        return [p.parent / "history.csv" for p in self.models
                if same_recipe(p.parent, self.settings) is not False]


def same_recipe(job_dir: Path, settings: Mapping[str, Any]) -> bool | None:
    """Whether the finished job in ``job_dir`` was trained with ``settings`` (the keys given);
    None when it has no summary (not finished, or interrupted). Summaries written before the
    settings were recorded are judged on what they did record: precision and epochs run."""
    try:
        summary = json.loads((job_dir / "train_summary.json").read_text())
    except (OSError, ValueError):
        return None
    recorded = summary.get("settings")
    if isinstance(recorded, dict):
        return all(recorded[k] == v for k, v in settings.items() if k in recorded)
    if "amp" in settings and summary.get("amp", "none") != settings["amp"]:
        return False
    return not ("epochs" in settings and not summary.get("stopped_early")
                and summary.get("epochs_run") != settings["epochs"])


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
                           int(threads.get("pretrain_cls", default)), pre))
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
                           int(threads.get("finetune_cls", default)), fine))
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


def timed_rate(config: Mapping[str, Any], threads: int, *, steps: int = 3,
               settings: Mapping[str, Any] | None = None) -> float:
    """Training images per second of the configured classifier, timed here (forward, backward,
    optimiser step on random inputs after one warm-up step) on ``threads`` threads, with the
    batch size, precision (``amp``) and memory layout of ``settings`` (default: fine-tuning's):
    bf16 trains about 2.5x faster than fp32 on CPUs that compute it natively."""
    import torch

    from cxrbs.core.device import autocast_context
    from cxrbs.models.registry import create_model

    cls = config["cls"]
    train = dict(cls.get("finetune") or {}) if settings is None else dict(settings)
    size = int(cls.get("input_size") or config.get("image_size", 256))
    batch = int(train.get("batch_size", 8))
    model = create_model(str(cls["model"]), seed=0, **dict(cls.get("model_kwargs") or {}))
    x = torch.rand(batch, 3, size, size)
    if train.get("channels_last"):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    amp = str(train.get("amp", "none"))
    amp = "none" if amp == "fp16" else amp  # fp16 is a GPU mode; timed here as fp32
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        y = torch.randint(0, 2, (batch,))
        start = 0.0
        for step in range(steps + 1):
            if step == 1:
                start = time.perf_counter()
            opt.zero_grad()
            with autocast_context("cpu", amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
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
            rate = timed_rate(config, stage.threads, settings=stage.settings)
            source = "timed now on random inputs"
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
