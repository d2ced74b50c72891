from pathlib import Path

from cxrbs.bs.control import control_stack
from cxrbs.core.snakemake_glue import run


def main(sm):
    control_stack(Path(sm.input.original), Path(sm.input.suppressed), Path(sm.input.manifest),
                  out_stack=Path(sm.output.images), out_manifest=Path(sm.output.manifest),
                  seed=sm.params.seed, low_pct=sm.params.low_pct, high_pct=sm.params.high_pct)


run(snakemake, main)  # noqa: F821
