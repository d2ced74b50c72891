# Bone suppression: train every configured architecture with one loop, evaluate each (and the
# identity baseline) on the validation pairs and every test set, pick the best on validation
# only, apply it. With bs.pretrained, that one model replaces training (use_pretrained_bs).


localrules:
    use_pretrained_bs,


# With bs.pretrained, ARCHS is ["pretrained"]: its best.pt is copied, never trained.
ruleorder: use_pretrained_bs > train_bs


rule use_pretrained_bs:
    """bs.pretrained: copy that model (bundled sha256 and checkpoint kind checked) to where a
    trained one would be; no train_bs job runs and no training pairs are needed."""
    input:
        pretrained_weights,
    output:
        best="results/bs/models/pretrained/best.pt",
        info="results/bs/models/pretrained/pretrained.json",
    log:
        "logs/bs/use_pretrained.log",
    benchmark:
        "logs/benchmarks/bs/use_pretrained.tsv"
    conda:
        ENV
    params:
        pretrained=PRETRAINED,
        image_size=config["image_size"],
    script:
        "../scripts/use_pretrained_bs.py"


rule train_bs:
    """One training loop for every architecture; resumes from last.pt if killed."""
    input:
        train="results/bs/data/train.npy",
        val="results/bs/data/val.npy",
    output:
        best="results/bs/models/{arch}/best.pt",
        last="results/bs/models/{arch}/last.pt",
        history="results/bs/models/{arch}/history.csv",
        summary="results/bs/models/{arch}/train_summary.json",
    log:
        "logs/bs/train_{arch}.log",
    benchmark:
        "logs/benchmarks/bs/train_{arch}.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        model_kwargs=lambda wildcards: config["bs"]["architectures"][wildcards.arch],
        train=config["bs"]["train"],
        seed=config["seed"],
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/train_bs.py"


rule evaluate_bs:
    """MAE, PSNR, SSIM, MS-SSIM and bone suppression ratio per test image."""
    input:
        unpack(eval_pairs),
        model="results/bs/models/{arch}/best.pt",
    output:
        "results/bs/eval/{arch}/{testset}.csv",
    log:
        "logs/bs/evaluate_{arch}_{testset}.log",
    benchmark:
        "logs/benchmarks/bs/evaluate_{arch}_{testset}.tsv"
    conda:
        ENV
    threads: 2
    script:
        "../scripts/evaluate_bs.py"


rule evaluate_identity:
    """The identity baseline: the input radiograph taken as the bone-suppressed prediction."""
    input:
        unpack(eval_pairs),
    output:
        "results/bs/eval/identity/{testset}.csv",
    log:
        "logs/bs/evaluate_identity_{testset}.log",
    benchmark:
        "logs/benchmarks/bs/evaluate_identity_{testset}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate_bs.py"


rule summarize_bs:
    """Mean, SD and 95% CI per architecture, test set and metric, identity baseline included."""
    input:
        expand(
            "results/bs/eval/{arch}/{testset}.csv",
            arch=ARCHS + ["identity"],
            testset=BS_EVAL_SETS,
        ),
    output:
        report(
            "results/bs/eval/summary.csv",
            caption="../report/bs_summary.rst",
            category="Bone suppression",
        ),
    log:
        "logs/bs/summarize.log",
    benchmark:
        "logs/benchmarks/bs/summarize.tsv"
    conda:
        ENV
    script:
        "../scripts/summarize_bs.py"


rule select_bs:
    """Pick the best model on the validation pairs only (never a test set) and say why. The
    decision alone: its params are what the choice reads (metric, selection set), so statistics
    settings (bs.n_boot) never rewrite best.json nor rerun what is trained on suppressed images.
    With bs.pretrained there is one candidate: recorded as such, nothing selected."""
    input:
        summary="results/bs/eval/summary.csv",
        pretrained=["results/bs/models/pretrained/pretrained.json"] if PRETRAINED else [],
    output:
        best="results/bs/best.json",
    log:
        "logs/bs/select.log",
    benchmark:
        "logs/benchmarks/bs/select.tsv"
    conda:
        ENV
    params:
        metric=config["bs"]["select_metric"],
        selection_set=SELECTION_SET,
    script:
        "../scripts/select_bs.py"


rule paired_bs:
    """Test every model against identity (and the selected one against the others) image by
    image on every evaluated set. Statistics only: the report reads them, nothing trained does."""
    input:
        best="results/bs/best.json",
        per_image=expand(
            "results/bs/eval/{arch}/{testset}.csv",
            arch=ARCHS + ["identity"],
            testset=BS_EVAL_SETS,
        ),
    output:
        paired=report(
            "results/bs/eval/paired.csv",
            caption="../report/bs_paired.rst",
            category="Bone suppression",
        ),
        verdict="results/bs/eval/paired_vs_identity.json",
    log:
        "logs/bs/paired.log",
    benchmark:
        "logs/benchmarks/bs/paired.tsv"
    conda:
        ENV
    params:
        metric=config["bs"]["select_metric"],
        n_boot=config["bs"]["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/paired_bs.py"


rule control_tb:
    """Control (sham) arm (cls.variants: control): each image gets its own bone-suppression
    change with the high band phase-randomised (same energy and scales); bones left in place."""
    input:
        original="results/data/{tbset}/images.npy",
        suppressed="results/suppressed/{tbset}/images.npy",
        manifest="results/data/{tbset}/manifest.csv",
    output:
        images="results/control/{tbset}/images.npy",
        manifest="results/control/{tbset}/manifest.csv",
    log:
        "logs/bs/control_{tbset}.log",
    benchmark:
        "logs/benchmarks/bs/control_{tbset}.tsv"
    conda:
        ENV
    params:
        seed=lambda wildcards: dataset_seed(wildcards.tbset),
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/control_tb.py"


rule suppress_tb:
    """Bone-suppress every image of a TB set with the selected model (PNG mirror + stack)."""
    input:
        best="results/bs/best.json",
        models=expand("results/bs/models/{arch}/best.pt", arch=ARCHS),
        images="results/data/{tbset}/images.npy",
        manifest="results/data/{tbset}/manifest.csv",
    output:
        manifest="results/suppressed/{tbset}/manifest.csv",
        images="results/suppressed/{tbset}/images.npy",
    log:
        "logs/bs/suppress_{tbset}.log",
    benchmark:
        "logs/benchmarks/bs/suppress_{tbset}.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
    params:
        batch_size=config["bs"]["suppress_batch_size"],
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/suppress_tb.py"
