import json
from pathlib import Path

import pandas as pd

from cxrbs.bs.package import package_model
from cxrbs.core.layout import Layout
from cxrbs.core.snakemake_glue import run


def main(sm):
    layout = Layout.of_best(sm.input.best)
    checkpoint = layout.chosen_checkpoint(sm.input.models)  # a declared input
    arch = layout.bs_arch_of(checkpoint)
    summary = next(Path(p) for p in sm.input.summaries if layout.bs_arch_of(Path(p)) == arch)
    per_image = pd.concat([pd.read_csv(p, dtype={"name": str}) for p in sm.input.per_image],
                          ignore_index=True)
    per_image = per_image[per_image["arch"].isin([arch, "identity"])]
    figure = Path(sm.output.figure[0]) if sm.output.figure else None
    if figure is not None:
        from cxrbs.bs.figure import before_after_figure
        from cxrbs.bs.predict import load_bs_model

        models = {sm.params.bundle["name"]: load_bs_model(checkpoint)}
        if getattr(sm.input, "compare_with", None):
            models[Path(sm.input.compare_with).stem] = load_bs_model(sm.input.compare_with)
        before_after_figure(models, Path(sm.input.figure_input), figure)
    package_model(name=sm.params.bundle["name"], checkpoint=checkpoint, per_image=per_image,
                  arch=arch, split_csv=Path(sm.input.split),
                  outdir=Path(sm.output.weights).parent, bundle_cfg=sm.params.bundle,
                  seed=sm.params.seed, train_summary=json.loads(summary.read_text("utf-8")),
                  figure=figure, recipe_command=sm.params.command)


run(snakemake, main)  # noqa: F821
