from cxrbs.core.atomic import write_csv
from cxrbs.data.stacks import read_manifest
from cxrbs.core.snakemake_glue import run
from cxrbs.data.splits import patient_kfold


def main(sm):
    manifest = read_manifest(sm.input[0])
    folds = patient_kfold(manifest["patient_id"].to_numpy(), manifest["label"].astype(int).to_numpy(),
                          k=sm.params.k, seed=sm.params.seed)
    out = manifest[["index", "image_path", "patient_id", "label"]].assign(fold=folds)
    write_csv(sm.output[0], out)


run(snakemake, main)  # noqa: F821
