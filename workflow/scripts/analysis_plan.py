from cxrbs.cls.plan import write_plan
from cxrbs.core.snakemake_glue import run


def main(sm):
    write_plan(sm.output[0], dict(sm.params.items()))


run(snakemake, main)  # noqa: F821
