from pathlib import Path

from cxrbs.core.atomic import write_json
from cxrbs.report.figures import make_all_figures
from cxrbs.core.snakemake_glue import run


def main(sm):
    config = {"seed": sm.params.seed, "datasets": dict(sm.params.datasets),
              "cls": dict(sm.params.cls), "report": dict(sm.params.report)}
    out_dir = Path(sm.output.figures)
    notes = {}
    results = Path(sm.input.bs_summary).parents[2]  # results/bs/eval/summary.csv
    figures = make_all_figures(results, config, out_dir, notes=notes)
    index = {"figures": {k: [str(p) for p in v] for k, v in figures.items()}, "notes": notes}
    write_json(out_dir / "index.json", index)


run(snakemake, main)  # noqa: F821
