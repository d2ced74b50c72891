import json
from pathlib import Path

from cxrbs.cls.pipeline import pretrain
from cxrbs.core.snakemake_glue import run


def main(sm):
    weights = None
    if sm.input.weights:
        source = json.loads(Path(sm.input.weights[0]).read_text())
        weights = Path(source["root"])
    pretrain([Path(p) for p in sm.input.manifests], [Path(p) for p in sm.input.images],
             model=sm.params.model, model_kwargs=dict(sm.params.model_kwargs), train_cfg=dict(sm.params.train),
             seed=sm.params.seed, outdir=Path(sm.output.model).parent, weights=weights,
             threads=sm.threads, hog_floor=sm.params.hog_floor, input_size=sm.params.input_size,
             low_pct=sm.params.low_pct, high_pct=sm.params.high_pct)


run(snakemake, main)  # noqa: F821
