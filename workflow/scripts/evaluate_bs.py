from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.bs.evaluate import evaluate_model_on_pairs
from cxrbs.bs.pretrained import seen_patients
from cxrbs.core.snakemake_glue import run


def main(sm):
    model = getattr(sm.input, "model", None)
    arch = sm.wildcards.get("arch", "identity")
    # bs.pretrained: the model's own training/validation patients are left out of these pairs
    exclude = seen_patients(getattr(sm.input, "exclude", None))
    frame = evaluate_model_on_pairs(Path(model) if model else None, Path(sm.input.images),
                                    Path(sm.input.manifest), arch=arch, test_set=sm.wildcards.testset,
                                    exclude_patients=exclude)
    write_csv(sm.output[0], frame)


run(snakemake, main)  # noqa: F821
