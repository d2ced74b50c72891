from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.bs.evaluate import evaluate_model_on_pairs
from cxrbs.core.snakemake_glue import run


def main(sm):
    model = getattr(sm.input, "model", None)
    arch = sm.wildcards.get("arch", "identity")
    frame = evaluate_model_on_pairs(Path(model) if model else None, Path(sm.input.images),
                                    Path(sm.input.manifest), arch=arch, test_set=sm.wildcards.testset)
    write_csv(sm.output[0], frame)


run(snakemake, main)  # noqa: F821
