# The explain stage (relevance maps, t-SNE and example predictions from the models), figures drawn
# from its outputs and the stage tables, and the one self-contained HTML report that a researcher
# can mail.

BOXES_CSV = config["report"]["boxes_csv"]


rule explain:
    """Models on chosen images: BS examples, CRM + Grad-CAM maps, box scores, features + t-SNE."""
    input:
        bs_summary="results/bs/eval/summary.csv",
        bs_best="results/bs/best.json",
        bs_models=expand("results/bs/models/{arch}/best.pt", arch=ARCHS),
        bs_evals=expand("results/bs/eval/{arch}/{testset}.csv", arch=ARCHS, testset=BS_TEST),
        bs_tests=expand("results/data/{testset}/images.npy", testset=BS_TEST),
        bs_test_manifests=expand("results/data/{testset}/manifest.csv", testset=BS_TEST),
        predictions=expand(
            "results/cls/{tbset}/{variant}/fold{fold}/predictions.csv",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
        models=expand(
            "results/cls/{tbset}/{variant}/fold{fold}/model.pt",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
        folds=expand("results/data/{tbset}/folds.csv", tbset=TB_SETS),
        images=expand("results/data/{tbset}/images.npy", tbset=TB_SETS),
        suppressed=expand("results/suppressed/{tbset}/images.npy", tbset=TB_SETS),
        boxes=[BOXES_CSV] if BOXES_CSV else [],
        # boxes are scaled by the original images' sizes, recorded in the manifests
        tb_manifests=(
            expand("results/data/{tbset}/manifest.csv", tbset=TB_SETS) if BOXES_CSV else []
        ),
    output:
        **({"crm_boxes": "results/cls/crm_boxes.csv"} if BOXES_CSV else {}),
        bs_examples="results/explain/bs_examples.npz",
        bs_examples_table="results/explain/bs_examples.csv",
        crm_maps="results/explain/crm_maps.npz",
        crm_cases="results/explain/crm_cases.csv",
        tsne="results/explain/tsne.csv",
        notes="results/explain/notes.json",
        feature_space="results/cls/feature_space.csv",
    log:
        "logs/report/explain.log",
    benchmark:
        "logs/benchmarks/report/explain.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    params:
        seed=config["seed"],
        datasets=config["datasets"],
        cls={
            key: config["cls"][key]
            for key in ("threshold", "variants", "input_size")
            + (("lung_crop",) if LUNG_CROP else ())
        },
        report=config["report"],
    script:
        "../scripts/explain_models.py"


rule arm_measures:
    """Per TB image and arm, with lung masks: bone left (the selected BS model's own estimate) and
    CRM share inside the lungs; per arm the classes' silhouette in the fold models' features."""
    input:
        bs_best="results/bs/best.json",
        bs_models=expand("results/bs/models/{arch}/best.pt", arch=ARCHS),
        folds=expand("results/data/{tbset}/folds.csv", tbset=TB_SETS),
        stacks=[variant_stack(t, v) for t in TB_SETS for v in VARIANTS],
        models=expand(
            "results/cls/{tbset}/{variant}/fold{fold}/model.pt",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
    output:
        per_image="results/explain/arm_measures.csv",
        tests="results/explain/arm_tests.csv",
        silhouette="results/explain/silhouette.csv",
    log:
        "logs/report/arm_measures.log",
    benchmark:
        "logs/benchmarks/report/arm_measures.tsv"
    conda:
        ENV
    threads: config["resources"]["train_threads"]
    params:
        **({"lung_crop": LUNG_CROP} if LUNG_CROP else {}),
        tb_sets=TB_SETS,
        variants=VARIANTS,
        folds=FOLDS,
        lung_masks={t: DATASETS[t].get("lung_masks") for t in TB_SETS},
        input_size=config["cls"]["input_size"],
        crm_threshold=config["report"]["crm_threshold"],
        n_boot=config["cls"]["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/arm_measures.py"


rule figures:
    """Figures of every stage, drawn from the stage tables and the explain rule's arrays."""
    input:
        bs_summary="results/bs/eval/summary.csv",
        # the forest plot (every model vs identity), the first-screen figure and the per-image
        # scatter of the selected model against identity
        bs_best="results/bs/best.json",
        bs_paired="results/bs/eval/paired.csv",
        bs_per_image=expand(
            "results/bs/eval/{arch}/{testset}.csv",
            arch=ARCHS + ["identity"],
            testset=BS_EVAL_SETS,
        ),
        # bs.pretrained: nothing was trained, so no history
        bs_histories=expand(
            "results/bs/models/{arch}/history.csv", arch=[] if PRETRAINED else ARCHS
        ),
        pretrain_history="results/cls/pretrain/history.csv",
        metrics="results/cls/metrics.csv",
        comparison="results/cls/comparison.csv",
        predictions=expand(
            "results/cls/{tbset}/{variant}/fold{fold}/predictions.csv",
            tbset=TB_SETS,
            variant=VARIANTS,
            fold=FOLDS,
        ),
        bs_examples="results/explain/bs_examples.npz",
        bs_examples_table="results/explain/bs_examples.csv",
        crm_maps="results/explain/crm_maps.npz",
        crm_cases="results/explain/crm_cases.csv",
        tsne="results/explain/tsne.csv",
        explain_notes="results/explain/notes.json",
        feature_space="results/cls/feature_space.csv",
    output:
        figures=report(
            directory("results/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/report/figures.log",
    benchmark:
        "logs/benchmarks/report/figures.tsv"
    conda:
        ENV
    threads: 1
    params:
        seed=config["seed"],
        datasets=config["datasets"],
        cls={key: config["cls"][key] for key in ("threshold", "variants", "input_size")},
        report=config["report"],
    script:
        "../scripts/make_figures.py"


rule report:
    """One self-contained HTML file: the answers on its first screen, then figures, every long
    table collapsed with its CSV embedded as a download, the config and software versions."""
    input:
        figures="results/figures",
        feature_space="results/cls/feature_space.csv",
        crm_boxes=["results/cls/crm_boxes.csv"] if BOXES_CSV else [],
        arm_measures=(
            [
                "results/explain/arm_measures.csv",
                "results/explain/arm_tests.csv",
                "results/explain/silhouette.csv",
            ]
            if ARM_MEASURES
            else []
        ),
        bs_summary="results/bs/eval/summary.csv",
        bs_best="results/bs/best.json",
        # the statistics of the choice: only the report reads them (bs.n_boot reruns no training)
        bs_paired="results/bs/eval/paired.csv",
        bs_paired_verdict="results/bs/eval/paired_vs_identity.json",
        metrics="results/cls/metrics.csv",
        comparison="results/cls/comparison.csv",
        analysis_plan="results/cls/analysis_plan.json",
        pretrain_summary="results/cls/pretrain/train_summary.json",
        manifests=expand("results/data/{imageset}/manifest.csv", imageset=IMAGE_SETS),
        folds=expand("results/data/{tbset}/folds.csv", tbset=TB_SETS),
        sources=expand("resources/{imageset}/source.json", imageset=IMAGE_SETS),
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    log:
        "logs/report/report.log",
    benchmark:
        "logs/benchmarks/report/report.tsv"
    conda:
        ENV
    params:
        config=config,
    script:
        "../scripts/make_report.py"
