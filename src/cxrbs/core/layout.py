"""The one place in the package that knows the workflow's ``results/`` tree.

The Snakemake rules spell their own output paths out (that is the catalog convention, and what a
reader of a rule wants to see); the package never rebuilds them by hand. Where package code must
find a result that was not passed to it explicitly (``cxrbs suppress`` looking for the workflow's
chosen model, the report reading the tables it summarises), it asks a :class:`Layout`. A test
checks that every path here is the one the rules write, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESULTS = Path("results")


@dataclass(frozen=True)
class Layout:
    """Paths under one results folder; ``root`` is ``results/`` of the workflow's working dir."""

    root: Path = RESULTS

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

    def bs_history(self, arch: str) -> Path:
        return self.bs_model_dir(arch) / "history.csv"

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

    def cls_fold_dir(self, tbset: str, variant: str, fold: int | str) -> Path:
        return self.cls_dir / tbset / variant / f"fold{fold}"

    def cls_fold_model(self, tbset: str, variant: str, fold: int | str) -> Path:
        return self.cls_fold_dir(tbset, variant, fold) / "model.pt"

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
    def figures_dir(self) -> Path:
        return self.root / "figures"

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
