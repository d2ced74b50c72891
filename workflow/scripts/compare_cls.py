from pathlib import Path

from cxrbs.atomic import write_csv
from cxrbs.cls_pipeline import compare
from cxrbs.snakemake_glue import run


def main(sm):
    write_csv(sm.output[0], compare([Path(p) for p in sm.input], threshold=sm.params.threshold))


run(snakemake, main)  # noqa: F821
