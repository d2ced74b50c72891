from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.cls.pipeline import compare
from cxrbs.core.snakemake_glue import run


def main(sm):
    write_csv(sm.output[0], compare([Path(p) for p in sm.input], threshold=sm.params.threshold,
                                      primary_endpoint=sm.params.primary_endpoint))


run(snakemake, main)  # noqa: F821
