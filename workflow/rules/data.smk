# Data stage: fetch (or synthesise) each data set, build its manifest and preprocessed stack,
# split patients into folds, and grow the bone-suppression training pairs by augmentation.


localrules:
    fetch_dataset,


rule fetch_dataset:
    """Download and extract a data set, use the user's local copy, or make synthetic phantoms."""
    output:
        "resources/{dataset}/source.json",
    log:
        "logs/fetch/{dataset}.log",
    benchmark:
        "logs/benchmarks/fetch/{dataset}.tsv"
    conda:
        ENV
    params:
        spec=lambda wildcards: DATASETS[wildcards.dataset],
        seed=lambda wildcards: dataset_seed(wildcards.dataset),
    script:
        "../scripts/fetch_dataset.py"


rule build_manifest:
    """One manifest per data set (patient ids drive every split) and its preprocessed uint16 stack."""
    input:
        "resources/{imageset}/source.json",
    output:
        manifest="results/data/{imageset}/manifest.csv",
        images="results/data/{imageset}/images.npy",
    log:
        "logs/data/{imageset}.log",
    benchmark:
        "logs/benchmarks/data/{imageset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=config["resources"]["data_mem_mb"],
    params:
        spec=lambda wildcards: DATASETS[wildcards.imageset],
        preprocess=preprocess_params(),
    script:
        "../scripts/build_manifest.py"


rule make_folds:
    """Patient-level, label-stratified folds of a TB set; both variants read this one file."""
    input:
        "results/data/{tbset}/manifest.csv",
    output:
        "results/data/{tbset}/folds.csv",
    log:
        "logs/folds/{tbset}.log",
    benchmark:
        "logs/benchmarks/folds/{tbset}.tsv"
    conda:
        ENV
    params:
        k=config["cls"]["folds"],
        seed=config["seed"],
    script:
        "../scripts/make_folds.py"


rule prepare_bs_pairs:
    """Split the pairs by patient (train/validation/test) first, then augment only the training part."""
    input:
        manifests=expand("results/data/{imageset}/manifest.csv", imageset=BS_TRAIN),
        images=expand("results/data/{imageset}/images.npy", imageset=BS_TRAIN),
    output:
        train="results/bs/data/train.npy",
        val="results/bs/data/val.npy",
        test="results/bs/data/test.npy",
        split="results/bs/data/split.csv",
    log:
        "logs/bs/prepare_pairs.log",
    benchmark:
        "logs/benchmarks/bs/prepare_pairs.tsv"
    conda:
        ENV
    resources:
        mem_mb=config["resources"]["data_mem_mb"],
    params:
        val_fraction=config["bs"]["val_fraction"],
        test_fraction=config["bs"]["test_fraction"],
        stratify_regex=config["bs"]["stratify_regex"],
        augment=config["bs"]["augment"],
        seed=config["seed"],
    script:
        "../scripts/prepare_bs_pairs.py"
