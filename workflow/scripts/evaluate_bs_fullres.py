from pathlib import Path

from cxrbs.bs.fullres import evaluate_fullres, fullres_files
from cxrbs.bs.pretrained import seen_patients
from cxrbs.core.atomic import write_csv
from cxrbs.core.snakemake_glue import run


def main(sm):
    manifests = {Path(p).parent.name: Path(p) for p in sm.input.manifests}
    split = getattr(sm.input, "split", None)
    part = {"validation": "val", "heldout_test": "test"}.get(sm.wildcards.testset)
    files = fullres_files(manifests, split_csv=Path(split) if split else None, part=part,
                          exclude_patients=seen_patients(getattr(sm.input, "exclude", None)))
    model = getattr(sm.input, "model", None)
    frame = evaluate_fullres(Path(model) if model else None, files,
                             arch=sm.wildcards.get("arch", "identity"),
                             test_set=sm.wildcards.testset, progress=False)
    write_csv(sm.output[0], frame)


run(snakemake, main)  # noqa: F821
