# Full-resolution scoring (the path `cxrbs suppress` runs) and packaging of the selected model as
# a bundled model: `snakemake --cores 2 --configfile config/bundled.yaml -- bundle`.

BUNDLE = config["bundle"]
BUNDLE_DIR = f"results/bundle/{BUNDLE['name']}"


def fullres_inputs(wildcards):
    """Original files of a paired set; 'validation' / 'heldout_test' via the training split."""
    if wildcards.testset in (SELECTION_SET, "heldout_test"):
        return {
            "manifests": expand("results/data/{imageset}/manifest.csv", imageset=BS_TRAIN),
            "split": "results/bs/data/split.csv",
        }
    return {"manifests": [f"results/data/{wildcards.testset}/manifest.csv"]}


def bundle_inputs(wildcards):
    extra = {}
    if BUNDLE["figure_input"]:
        extra["figure_input"] = BUNDLE["figure_input"]
    if BUNDLE["compare_with"]:
        from cxrbs.bs.suppress import resolve_model

        extra["compare_with"] = str(resolve_model(BUNDLE["compare_with"]))
    return extra


rule evaluate_bs_fullres:
    """Per-image scores of the full-resolution output, on the original files of each set."""
    input:
        unpack(fullres_inputs),
        model="results/bs/models/{arch}/best.pt",
    output:
        "results/bs/eval_fullres/{arch}/{testset}.csv",
    threads: 2
    log:
        "logs/bs/evaluate_fullres_{arch}_{testset}.log",
    benchmark:
        "benchmarks/bs/evaluate_fullres_{arch}_{testset}.tsv"
    conda:
        ENV
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
        "benchmarks/bs/evaluate_fullres_identity_{testset}.tsv"
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
    params:
        bundle=BUNDLE,
        seed=config["seed"],
        command=lambda wildcards: "snakemake --cores 2 --configfile "
        + " ".join(CONFIG_FILES)
        + " -- bundle",
    log:
        "logs/bs/bundle.log",
    benchmark:
        "benchmarks/bs/bundle.tsv"
    conda:
        ENV
    script:
        "../scripts/bundle_bs.py"
