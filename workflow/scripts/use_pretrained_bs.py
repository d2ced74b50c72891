from pathlib import Path

from cxrbs.bs.pretrained import install_pretrained
from cxrbs.core.snakemake_glue import run


def main(sm):
    install_pretrained(str(sm.params.pretrained), Path(sm.output.best), Path(sm.output.info),
                       image_size=sm.params.image_size)


run(snakemake, main)  # noqa: F821
