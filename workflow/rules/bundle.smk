# Full-resolution scoring (the path `cxrbs suppress` runs) and packaging of the selected model as
# a bundled model: `snakemake --cores 2 --configfile config/bundled.yaml -- bundle`.


rule evaluate_bs_fullres:
    """Per-image scores of the full-resolution output, on the original files of each set."""
    input:
        unpack(fullres_inputs),
        model="results/bs/models/{arch}/best.pt",
    output:
        "results/bs/eval_fullres/{arch}/{testset}.csv",
    log:
        "logs/bs/evaluate_fullres_{arch}_{testset}.log",
    benchmark:
        "logs/benchmarks/bs/evaluate_fullres_{arch}_{testset}.tsv"
    conda:
        ENV
    threads: 2
    script:
        "../scripts/evaluate_bs_fullres.py"


rule evaluate_identity_fullres:
    """The identity baseline on the same original files and the same scoring."""
    input:
        unpack(fullres_inputs),
    output:
        "results/bs/eval_fullres/identity/{testset}.csv",
    log:
        "logs/bs/evaluate_fullres_identity_{testset}.log",
    benchmark:
        "logs/benchmarks/bs/evaluate_fullres_identity_{testset}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_bs_fullres.py"


rule bundle:
    """Package the model best.json names: weights, split, card, metadata.json, index, figure."""
    input:
        unpack(bundle_inputs),
        best="results/bs/best.json",
        models=expand("results/bs/models/{arch}/best.pt", arch=ARCHS),
        summaries=expand("results/bs/models/{arch}/train_summary.json", arch=ARCHS),
        per_image=expand(
            "results/bs/eval_fullres/{arch}/{testset}.csv",
            arch=ARCHS + ["identity"],
            testset=BS_EVAL_SETS,
        ),
        split="results/bs/data/split.csv",
    output:
        weights=f"{BUNDLE_DIR}/{BUNDLE['name']}.pt",
        split=f"{BUNDLE_DIR}/{BUNDLE['name']}.split.csv",
        metadata=f"{BUNDLE_DIR}/{BUNDLE['name']}.metadata.json",
        card=f"{BUNDLE_DIR}/{BUNDLE['name']}.md",
        index=f"{BUNDLE_DIR}/models.json",
        figure=[f"{BUNDLE_DIR}/{BUNDLE['name']}_figure.png"] if BUNDLE["figure_input"] else [],
    log:
        "logs/bs/bundle.log",
    benchmark:
        "logs/benchmarks/bs/bundle.tsv"
    conda:
        ENV
    params:
        bundle=BUNDLE,
        seed=config["seed"],
        command=lambda wildcards: "snakemake --cores 2 --configfile "
        + " ".join(CONFIG_FILES)
        + " -- bundle",
    script:
        "../scripts/bundle_bs.py"
