from pathlib import Path

from cxrbs.core.atomic import write_json
from cxrbs.core.layout import results_root_of
from cxrbs.core.snakemake_glue import run
from cxrbs.explain.store import ExplainFiles
from cxrbs.report.figures import make_all_figures


def main(sm):
    config = {"seed": sm.params.seed, "datasets": dict(sm.params.datasets),
              "cls": dict(sm.params.cls), "report": dict(sm.params.report)}
    out_dir = Path(sm.output.figures)
    inp = sm.input
    explain = ExplainFiles(
        bs_examples=Path(inp.bs_examples), bs_examples_table=Path(inp.bs_examples_table),
        crm_maps=Path(inp.crm_maps), crm_cases=Path(inp.crm_cases), tsne=Path(inp.tsne),
        notes=Path(inp.explain_notes), feature_space=Path(inp.feature_space))
    notes = {}
    results = results_root_of(Path(inp.bs_summary))  # the stage tables, all declared inputs
    figures = make_all_figures(results, config, out_dir, explain=explain, notes=notes)
    index = {"figures": {k: [str(p) for p in v] for k, v in figures.items()}, "notes": notes}
    write_json(out_dir / "index.json", index)


run(snakemake, main)  # noqa: F821
