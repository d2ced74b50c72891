from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.cls.pipeline import compare
from cxrbs.core.snakemake_glue import run


def main(sm):
    write_csv(sm.output[0], compare([Path(p) for p in sm.input], threshold=sm.params.threshold,
                                      primary_endpoint=sm.params.primary_endpoint,
                                      equivalence_margin=sm.params.equivalence_margin,
                                      claimed_effect=sm.params.claimed_effect,
                                      inner_val_fraction=sm.params.inner_val_fraction,
                                      seed_variance=sm.params.seed_variance))


run(snakemake, main)  # noqa: F821
