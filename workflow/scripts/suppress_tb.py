from pathlib import Path

from cxrbs.core.layout import Layout
from cxrbs.core.snakemake_glue import run
from cxrbs.bs.suppress import suppress_stack


def main(sm):
    model = Layout.of_best(sm.input.best).chosen_checkpoint(sm.input.models)  # a declared input
    out_manifest = Path(sm.output.manifest)
    suppress_stack(model, Path(sm.input.images), Path(sm.input.manifest), out_stack=Path(sm.output.images),
                   out_manifest=out_manifest, png_dir=out_manifest.parent / "images",
                   batch_size=sm.params.batch_size, low_pct=sm.params.low_pct,
                   high_pct=sm.params.high_pct)


run(snakemake, main)  # noqa: F821
