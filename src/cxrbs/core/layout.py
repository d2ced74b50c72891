"""The one place in the package that knows the workflow's ``results/`` tree.

The Snakemake rules spell their own output paths out (that is the catalog convention, and what a
reader of a rule wants to see); the package never rebuilds them by hand. Where package code must
find a result that was not passed to it explicitly (``cxrbs suppress`` looking for the workflow's
chosen model, the report reading the tables it summarises), it asks a :class:`Layout`. A test
checks that every path here is the one the rules write, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cxrbs.core.errors import CxrbsError
from cxrbs.core.snakemake_glue import workflow_job

RESULTS = Path("results")


@dataclass(frozen=True)
class Layout:
    """Paths under one results folder; ``root`` is ``results/`` of the workflow's working dir."""

    root: Path = RESULTS

    @classmethod
    def of_best(cls, best_json: str | Path) -> Layout:
        """The layout whose :attr:`bs_best` is ``best_json`` (a rule's declared input)."""
        return cls(Path(best_json).parents[1])

    @property
    def workflow_dir(self) -> Path:
        """The folder the workflow ran in: relative paths in ``best.json`` are relative to it."""
        return self.root.parent

    # --- data stage -----------------------------------------------------------------------
    def data_dir(self, name: str) -> Path:
        return self.root / "data" / name

    def stack(self, name: str) -> Path:
        return self.data_dir(name) / "images.npy"

    def manifest(self, name: str) -> Path:
        return self.data_dir(name) / "manifest.csv"

    def folds(self, name: str) -> Path:
        return self.data_dir(name) / "folds.csv"

    # --- bone suppression -----------------------------------------------------------------
    @property
    def bs_dir(self) -> Path:
        return self.root / "bs"

    @property
    def bs_best(self) -> Path:
        return self.bs_dir / "best.json"

    @property
    def bs_summary(self) -> Path:
        return self.bs_dir / "eval" / "summary.csv"

    @property
    def bs_paired(self) -> Path:
        """Per-test-set paired tests: each model vs identity, the selected model vs the others."""
        return self.bs_dir / "eval" / "paired.csv"

    @property
    def bs_paired_verdict(self) -> Path:
        """The selected model vs identity on the selection metric, per evaluated set."""
        return self.bs_dir / "eval" / "paired_vs_identity.json"

    def bs_model_dir(self, arch: str) -> Path:
        return self.bs_dir / "models" / arch

    def bs_checkpoint(self, arch: str) -> Path:
        return self.bs_model_dir(arch) / "best.pt"

    @staticmethod
    def bs_arch_of(checkpoint: Path) -> str:
        """The architecture slot (``bs/models/<arch>/``) a checkpoint path lies in."""
        return Path(checkpoint).parent.name

    def chosen_checkpoint(self, candidates: Iterable[str | Path] | None = None) -> Path:
        """The bone-suppression checkpoint that ``best.json`` (:attr:`bs_best`) names.

        The one answer to "which model was chosen" (``suppress_tb``, ``bundle``, the explain
        stage and ``cxrbs suppress`` all ask here): its ``checkpoint`` field, relative to the
        workflow folder as the workflow writes it, else its ``arch`` slot. Whether the file
        exists is the caller's question. With ``candidates`` (a job's declared inputs), the
        candidate it names, so a job only opens a file Snakemake tracks.
        """
        best = self.bs_best
        rerun = ("rerun the workflow (snakemake --forcerun select_bs)" if workflow_job()
                 else "rerun the workflow or pass --model path/to/best.pt")
        try:
            choice = json.loads(best.read_text(encoding="utf-8"))
            wanted = str(choice.get("checkpoint") or "")
            arch = str(choice.get("arch") or "")
            if not (wanted or arch):
                raise KeyError("checkpoint")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CxrbsError(f"{best} is not a model choice written by the workflow ({exc}); "
                             f"{rerun}") from exc
        if candidates is None:
            if not wanted:
                return self.bs_checkpoint(arch)
            path = Path(wanted)
            return path if path.is_absolute() else self.workflow_dir / path
        listed = [Path(p) for p in candidates]
        parts = Path(wanted).parts
        for path in listed:
            if parts and path.parts[-len(parts):] == parts:
                return path
        for path in listed:
            if self.bs_arch_of(path) == arch:
                return path
        raise CxrbsError(f"{best} names {wanted or arch!r}, which is none of the candidate "
                         f"checkpoints ({', '.join(map(str, listed)) or 'none'}); {rerun}")

    def bs_eval(self, arch: str, testset: str) -> Path:
        return self.bs_dir / "eval" / arch / f"{testset}.csv"

    def bs_eval_fullres(self, arch: str, testset: str) -> Path:
        """Per-image scores of the full-resolution path (what ``cxrbs suppress`` returns)."""
        return self.bs_dir / "eval_fullres" / arch / f"{testset}.csv"

    def bundle_dir(self, name: str) -> Path:
        """A packaged bundled model: weights, split, card, metadata.json, models.json, figure."""
        return self.root / "bundle" / name

    def bs_eval_dir(self, arch: str) -> Path:
        return self.bs_dir / "eval" / arch

    def suppressed_stack(self, tbset: str) -> Path:
        return self.root / "suppressed" / tbset / "images.npy"

    # --- classification -------------------------------------------------------------------
    @property
    def cls_dir(self) -> Path:
        return self.root / "cls"

    @property
    def cls_pretrain_history(self) -> Path:
        return self.cls_dir / "pretrain" / "history.csv"

    @property
    def cls_pretrain_summary(self) -> Path:
        return self.cls_dir / "pretrain" / "train_summary.json"

    @property
    def cls_metrics(self) -> Path:
        return self.cls_dir / "metrics.csv"

    @property
    def cls_comparison(self) -> Path:
        return self.cls_dir / "comparison.csv"

    @property
    def cls_analysis_plan(self) -> Path:
        """The analysis plan frozen before any fine-tune (``cxrbs.cls.plan``)."""
        return self.cls_dir / "analysis_plan.json"

    def cls_fold_dir(self, tbset: str, variant: str, fold: int | str, repeat: int = 0) -> Path:
        """Repeat 0 under ``<tbset>/<variant>/fold<k>``, repeat r > 0 under ``.../repeat<r>/``."""
        arm = self.cls_dir / tbset / variant
        return (arm / f"repeat{repeat}" if int(repeat) else arm) / f"fold{fold}"

    def cls_fold_model(self, tbset: str, variant: str, fold: int | str, repeat: int = 0) -> Path:
        return self.cls_fold_dir(tbset, variant, fold, repeat) / "model.pt"

    @property
    def cls_pretrain_model(self) -> Path:
        return self.cls_dir / "pretrain" / "model.pt"

    def cls_fold_predictions(self, tbset: str, variant: str, fold: int | str) -> Path:
        return self.cls_fold_dir(tbset, variant, fold) / "predictions.csv"

    # --- explanation and report -----------------------------------------------------------
    @property
    def feature_space(self) -> Path:
        return self.cls_dir / "feature_space.csv"

    @property
    def crm_boxes(self) -> Path:
        return self.cls_dir / "crm_boxes.csv"

    @property
    def explain_dir(self) -> Path:
        """Arrays and tables of the explain rule that the figures rule draws from."""
        return self.root / "explain"

    @property
    def bs_examples(self) -> Path:
        return self.explain_dir / "bs_examples.npz"

    @property
    def bs_examples_table(self) -> Path:
        return self.explain_dir / "bs_examples.csv"

    @property
    def crm_maps(self) -> Path:
        return self.explain_dir / "crm_maps.npz"

    @property
    def crm_cases(self) -> Path:
        return self.explain_dir / "crm_cases.csv"

    @property
    def tsne(self) -> Path:
        return self.explain_dir / "tsne.csv"

    @property
    def explain_notes(self) -> Path:
        return self.explain_dir / "notes.json"

    @property
    def arm_measures(self) -> Path:
        """Per TB image and arm: bone left and relevance inside the lung masks, silhouette."""
        return self.explain_dir / "arm_measures.csv"

    @property
    def arm_tests(self) -> Path:
        return self.explain_dir / "arm_tests.csv"

    @property
    def silhouette(self) -> Path:
        return self.explain_dir / "silhouette.csv"

    def variant_stack(self, tbset: str, variant: str) -> Path:
        """The prepared stack an arm is fine-tuned and explained on (baseline, bone_suppressed,
        control): the same mapping as the workflow's ``variant_stack``."""
        if variant == "baseline":
            return self.stack(tbset)
        if variant == "control":
            return self.root / "control" / tbset / "images.npy"
        return self.suppressed_stack(tbset)

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def relative(self, path: Path) -> str:
        """``path`` as the workflow writes it into JSON: relative to the workflow folder."""
        try:
            return str(Path(path).relative_to(self.workflow_dir))
        except ValueError:
            return str(path)


def writer_rule(path: str | Path) -> str | None:
    """The workflow rule that writes the checkpoint ``path`` (under a ``results/`` folder), or
    None for a file the workflow does not write: for advice such as ``--forcerun train_bs``."""
    parts = Path(path).parts
    if "results" not in parts:
        return None
    rel = parts[len(parts) - 1 - parts[::-1].index("results") + 1:]
    if len(rel) == 4 and rel[:2] == ("bs", "models") and rel[3] in ("best.pt", "last.pt"):
        return "use_pretrained_bs" if rel[2] == "pretrained" else "train_bs"
    if rel == ("cls", "pretrain", "model.pt"):
        return "pretrain_cls"
    if len(rel) == 5 and rel[0] == "cls" and rel[3].startswith("fold") and rel[4] == "model.pt":
        return "finetune_cls"
    if (len(rel) == 6 and rel[0] == "cls" and rel[3].startswith("repeat")
            and rel[4].startswith("fold") and rel[5] == "model.pt"):
        return "finetune_cls_repeat"
    return None


WORKFLOW = Layout()
"""The layout of a workflow run in the current folder: notes name files by these paths."""


def results_root_of(summary_csv: Path) -> Path:
    """The results folder from the path of ``bs/eval/summary.csv`` (a declared rule input)."""
    return Path(summary_csv).parents[2]
