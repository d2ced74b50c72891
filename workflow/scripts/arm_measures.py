from pathlib import Path

from cxrbs.core.layout import Layout
from cxrbs.core.snakemake_glue import run
from cxrbs.explain.arm_measures import run_arm_measures


def main(sm):
    layout = Layout.of_best(sm.input.bs_best)  # every file it reads is a declared input
    masks = {t: Path(p) if p else None for t, p in dict(sm.params.lung_masks).items()}
    run_arm_measures(
        layout, list(sm.params.tb_sets), list(sm.params.variants), masks,
        bs_checkpoint=layout.chosen_checkpoint(list(sm.input.bs_models)),
        out_per_image=Path(sm.output.per_image), out_tests=Path(sm.output.tests),
        out_silhouette=Path(sm.output.silhouette), input_size=sm.params.input_size,
        crm_threshold=float(sm.params.crm_threshold), n_boot=int(sm.params.n_boot),
        seed=int(sm.params.seed), lung_crop=dict(sm.params.get("lung_crop", {})))


run(snakemake, main)  # noqa: F821
