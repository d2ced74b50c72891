import json
from pathlib import Path

from cxrbs.report.html import build_report, software_versions
from cxrbs.core.snakemake_glue import run


def main(sm):
    index = json.loads((Path(sm.input.figures) / "index.json").read_text(encoding="utf-8"))
    results = Path(sm.input.bs_summary).parents[2]  # results/bs/eval/summary.csv
    build_report(results, dict(sm.params.config), index["figures"], Path(sm.output[0]),
                 versions=software_versions(), notes=index["notes"])


run(snakemake, main)  # noqa: F821
