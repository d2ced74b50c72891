import pandas as pd

from cxrbs.core.atomic import write_csv
from cxrbs.bs.evaluate import summarize_evaluations
from cxrbs.core.snakemake_glue import run


def main(sm):
    write_csv(sm.output[0], summarize_evaluations([pd.read_csv(p) for p in sm.input]))


run(snakemake, main)  # noqa: F821
