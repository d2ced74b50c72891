from pathlib import Path

from cxrbs.core.layout import Layout, results_root_of
from cxrbs.core.snakemake_glue import run
from cxrbs.explain.analysis import run_analysis
from cxrbs.explain.store import ExplainFiles


def main(sm):
    config = {"seed": sm.params.seed, "datasets": dict(sm.params.datasets),
              "cls": dict(sm.params.cls), "report": dict(sm.params.report)}
    out = sm.output
    files = ExplainFiles(
        bs_examples=Path(out.bs_examples), bs_examples_table=Path(out.bs_examples_table),
        crm_maps=Path(out.crm_maps), crm_cases=Path(out.crm_cases), tsne=Path(out.tsne),
        notes=Path(out.notes), feature_space=Path(out.feature_space),
        crm_boxes=Path(out.crm_boxes) if "crm_boxes" in out.keys() else None)
    layout = Layout(results_root_of(Path(sm.input.bs_summary)))  # every file it reads is an input
    boxes = list(sm.input.boxes)
    run_analysis(layout, config, files, boxes_csv=boxes[0] if boxes else None)


run(snakemake, main)  # noqa: F821
