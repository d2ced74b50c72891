from pathlib import Path

from cxrbs.core.snakemake_glue import run
from cxrbs.data.sources import prepare_source


def main(sm):
    prepare_source(sm.wildcards.dataset, dict(sm.params.spec), Path(sm.output[0]), seed=sm.params.seed)


run(snakemake, main)  # noqa: F821
