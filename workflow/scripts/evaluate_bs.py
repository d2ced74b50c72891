from pathlib import Path

from cxrbs.atomic import write_csv
from cxrbs.bs_eval import evaluate_model_on_pairs
from cxrbs.snakemake_glue import run


def main(sm):
    model = getattr(sm.input, "model", None)
    arch = sm.wildcards.get("arch", "identity")
    frame = evaluate_model_on_pairs(Path(model) if model else None, Path(sm.input.images),
                                    Path(sm.input.manifest), arch=arch, test_set=sm.wildcards.testset)
    write_csv(sm.output[0], frame)


run(snakemake, main)  # noqa: F821
