from pathlib import Path

from cxrbs.bs.pairs import prepare_pairs
from cxrbs.core.snakemake_glue import run


def main(sm):
    augment = dict(sm.params.augment)
    prepare_pairs([Path(p) for p in sm.input.manifests], [Path(p) for p in sm.input.images],
                  train_out=Path(sm.output.train), val_out=Path(sm.output.val),
                  split_out=Path(sm.output.split), val_fraction=sm.params.val_fraction,
                  n_pairs=augment.pop("n_pairs"), seed=sm.params.seed, augment=augment,
                  test_out=Path(sm.output.test), test_fraction=sm.params.test_fraction,
                  stratify_regex=sm.params.stratify_regex)


run(snakemake, main)  # noqa: F821
