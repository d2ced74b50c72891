# TB classification: pretrain on a CXR collection, fine-tune per TB set x variant x fold on the
# same patient-level folds, pool the out-of-fold predictions, compare baseline vs bone-suppressed.


rule analysis_plan:
    """The frozen analysis plan (issue 22): sha256 + UTC timestamp of every analysis-relevant
    value. Its params are exactly those values, so it reruns only when one changes; the
    comparison and the report read it (the report flags a plan changed after the first one).
    Training does not take it as an input: an ancient() input from a job that reruns hides the
    params changes of everything downstream from Snakemake (tests/test_rerun_scope.py)."""
    output:
        "results/cls/analysis_plan.json",
    log:
        "logs/cls/analysis_plan.log",
    benchmark:
        "logs/benchmarks/cls/analysis_plan.tsv"
    localrule: True
    conda:
        ENV
    params:
        primary_endpoint=config["cls"]["primary_endpoint"],
        folds=config["cls"]["folds"],
        repeats=config["cls"]["repeats"],
        seed=config["seed"],
        variants=VARIANTS,
        threshold=config["cls"]["threshold"],
        equivalence_margin=config["cls"].get("equivalence_margin", 0.02),
        claimed_effect=config["cls"].get("claimed_effect", 0.03),
        seed_variance=config["cls"].get("seed_variance", "full"),
    script:
        "../scripts/analysis_plan.py"


rule pretrain_cls:
    """CXR-modality pretraining (normal vs abnormal), with the HOG + logistic-regression floor."""
    input:
        manifests=expand("results/data/{imageset}/manifest.csv", imageset=PRETRAIN_SETS),
        images=expand("results/data/{imageset}/images.npy", imageset=PRETRAIN_SETS),
        weights=weights_input,
    output:
        model="results/cls/pretrain/model.pt",
        history="results/cls/pretrain/history.csv",
        predictions="results/cls/pretrain/predictions.csv",
        summary="results/cls/pretrain/train_summary.json",
    log:
        "logs/cls/pretrain.log",
    benchmark:
        "logs/benchmarks/cls/pretrain.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        model=config["cls"]["model"],
        model_kwargs=config["cls"]["model_kwargs"],
        input_size=config["cls"]["input_size"],
        train=config["cls"]["pretrain"],
        seed=config["seed"],
        hog_floor=config["cls"]["hog_floor"],
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/pretrain_cls.py"


rule finetune_cls:
    """Fine-tune on 3 folds (inner validation by patient) and predict the held-out fold."""
    input:
        pretrained="results/cls/pretrain/model.pt",
        images=cls_images,
        folds="results/data/{tbset}/folds.csv",
    output:
        model="results/cls/{tbset}/{variant}/fold{fold}/model.pt",
        predictions="results/cls/{tbset}/{variant}/fold{fold}/predictions.csv",
    log:
        "logs/cls/finetune_{tbset}_{variant}_fold{fold}.log",
    benchmark:
        "logs/benchmarks/cls/finetune_{tbset}_{variant}_fold{fold}.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        train=finetune_params,
        input_size=config["cls"]["input_size"],
        seed=config["seed"],
        hog_floor=config["cls"]["hog_floor"],
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/finetune_cls.py"


rule finetune_cls_repeat:
    """The same fine-tuning on the same folds with another seed (cls.repeats > 1): training noise."""
    input:
        pretrained="results/cls/pretrain/model.pt",
        images=cls_images,
        folds="results/data/{tbset}/folds.csv",
    output:
        model="results/cls/{tbset}/{variant}/repeat{repeat}/fold{fold}/model.pt",
        predictions="results/cls/{tbset}/{variant}/repeat{repeat}/fold{fold}/predictions.csv",
    log:
        "logs/cls/finetune_{tbset}_{variant}_repeat{repeat}_fold{fold}.log",
    benchmark:
        "logs/benchmarks/cls/finetune_{tbset}_{variant}_repeat{repeat}_fold{fold}.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    resources:
        gpu=1,
        mem_mb=config["resources"]["train_mem_mb"],
    params:
        train=finetune_params,
        input_size=config["cls"]["input_size"],
        seed=lambda wildcards: repeat_seed(wildcards.repeat),
        hog_floor=False,
        low_pct=LOW_PCT,
        high_pct=HIGH_PCT,
    script:
        "../scripts/finetune_cls.py"


rule evaluate_cls:
    """Seven metrics with 95% CIs per fold and pooled, for the deep model and the HOG floor."""
    input:
        "results/cls/pretrain/predictions.csv",
        expand(
            "results/cls/{tbset}/{variant}/fold{fold}/predictions.csv",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
    output:
        report(
            "results/cls/metrics.csv",
            caption="../report/cls_metrics.rst",
            category="Classification",
        ),
    log:
        "logs/cls/evaluate.log",
    benchmark:
        "logs/benchmarks/cls/evaluate.tsv"
    conda:
        ENV
    params:
        threshold=config["cls"]["threshold"],
        n_boot=config["cls"]["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/evaluate_cls.py"


rule compare_cls:
    """Paired tests, baseline vs bone-suppressed: the primary endpoint (DeLong) and secondary tests."""
    input:
        expand(
            "results/cls/{tbset}/{variant}/fold{fold}/predictions.csv",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
        expand(
            "results/cls/{tbset}/{variant}/repeat{repeat}/fold{fold}/predictions.csv",
            tbset=TB_SETS,
            variant=VARIANTS,
            repeat=REPEATS[1:],
            fold=FOLDS,
        ),
        plan="results/cls/analysis_plan.json",
    output:
        report(
            "results/cls/comparison.csv",
            caption="../report/cls_comparison.rst",
            category="Classification",
        ),
    log:
        "logs/cls/compare.log",
    benchmark:
        "logs/benchmarks/cls/compare.tsv"
    conda:
        ENV
    params:
        threshold=config["cls"]["threshold"],
        primary_endpoint=config["cls"]["primary_endpoint"],
        equivalence_margin=config["cls"].get("equivalence_margin", 0.02),
        claimed_effect=config["cls"].get("claimed_effect", 0.03),
        seed_variance=config["cls"].get("seed_variance", "full"),
        inner_val_fraction=(config["cls"].get("finetune") or {}).get("val_fraction", 0.1),
    script:
        "../scripts/compare_cls.py"
