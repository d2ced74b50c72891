from pathlib import Path

import numpy as np

from cxrbs.core.snakemake_glue import run
from cxrbs.bs.train import TrainConfig, train_bs


def main(sm):
    cfg = TrainConfig(**dict(sm.params.train), seed=sm.params.seed, threads=sm.threads)
    train_bs(sm.wildcards.arch, dict(sm.params.model_kwargs),
             np.load(sm.input.train, mmap_mode="r"), np.load(sm.input.val, mmap_mode="r"),
             cfg, Path(sm.output.best).parent, low_pct=sm.params.low_pct,
             high_pct=sm.params.high_pct)


run(snakemake, main)  # noqa: F821
