from pathlib import Path

from cxrbs.cls.pipeline import finetune_fold
from cxrbs.core.snakemake_glue import run


def main(sm):
    train = dict(sm.params.train)
    lung_crop = train.pop("lung_crop", None)  # cls.lung_crop of this set (common.smk)
    finetune_fold(Path(sm.input.images), Path(sm.input.folds), dataset=sm.wildcards.tbset,
                  variant=sm.wildcards.variant, fold=int(sm.wildcards.fold),
                  init_checkpoint=Path(sm.input.pretrained), train_cfg=train,
                  seed=sm.params.seed, outdir=Path(sm.output.model).parent, threads=sm.threads,
                  hog_floor=sm.params.hog_floor, input_size=sm.params.input_size,
                  low_pct=sm.params.low_pct, high_pct=sm.params.high_pct,
                  lung_crop=lung_crop)


run(snakemake, main)  # noqa: F821
