from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.cls.pipeline import evaluate
from cxrbs.core.snakemake_glue import run


def main(sm):
    table = evaluate([Path(p) for p in sm.input], threshold=sm.params.threshold,
                     n_boot=sm.params.n_boot, seed=sm.params.seed)
    write_csv(sm.output[0], table)


run(snakemake, main)  # noqa: F821
