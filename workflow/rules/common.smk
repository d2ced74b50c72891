# Config validation, resource scopes and the small input functions the rules share.
import zlib

from snakemake.utils import validate

from cxrbs.cls.lung_crop import crop_settings
from cxrbs.config_checks import check_config
from cxrbs.core.config import use_config_files
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import WORKFLOW

# One readable line per problem first (naming the key and the config file actually used), then
# Snakemake's validation fills defaults. Jobs name the same file (cxrbs.data.download).
CONFIG_FILES = [str(f) for f in (workflow.overwrite_configfiles or workflow.configfiles)]
use_config_files(CONFIG_FILES)
try:
    check_config(
        config,
        workflow.source_path("../schemas/config.schema.yaml"),
        CONFIG_FILES,
        deep=workflow.is_main_process,
    )
except CxrbsError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, schema="../schemas/config.schema.yaml")


def canonical(obj):
    """Keys sorted at every level: params compare equal however the YAML file orders them."""
    if isinstance(obj, dict):
        return {key: canonical(obj[key]) for key in sorted(obj)}
    if isinstance(obj, list):
        return [canonical(item) for item in obj]
    return obj


_canonical_config = canonical(config)
config.clear()
config.update(_canonical_config)


# A `gpu` limit given on a workstation (--resources gpu=1) must not serialise a cluster run.
resource_scopes:
    gpu="local",


ENV = "../../envs/cxrbs.yaml"
DATASETS = config["datasets"]
# bs.pretrained (a bundled model's name or a checkpoint path): no training; that model takes the
# one architecture slot "pretrained" and is evaluated, recorded in best.json and applied.
PRETRAINED = config["bs"].get("pretrained")
ARCHS = ["pretrained"] if PRETRAINED else sorted(config["bs"].get("architectures", {}))
VARIANTS = config["cls"]["variants"]
FOLDS = list(range(config["cls"]["folds"]))
# Repeat 0 is the fine-tuning under results/cls/{tbset}/{variant}/fold{k}; repeats 1.. rerun it
# with other seeds on the same folds (results/cls/{tbset}/{variant}/repeat{r}/fold{k}).
REPEATS = list(range(config["cls"]["repeats"]))


def datasets_with_role(role):
    return sorted(name for name, spec in DATASETS.items() if spec["role"] == role)


BS_TRAIN = datasets_with_role("bs_train")
BS_TEST = datasets_with_role("bs_test")
TB_SETS = datasets_with_role("tb")
PRETRAIN_SETS = datasets_with_role("pretrain")
IMAGE_SETS = BS_TRAIN + BS_TEST + TB_SETS + PRETRAIN_SETS
# Models are selected (and stopped early) on the training institution's validation pairs only;
# "heldout_test" (its patient-level test pairs) and every cross-institution set are only reported.
SELECTION_SET = "validation"
EVAL_SETS = BS_TEST + (["heldout_test"] if BS_TRAIN and config["bs"]["test_fraction"] > 0 else [])
# A pretrained model is the only candidate: nothing is selected, so no validation set is scored.
BS_EVAL_SETS = EVAL_SETS if PRETRAINED else [SELECTION_SET] + EVAL_SETS


wildcard_constraints:
    dataset="|".join(sorted(DATASETS)),
    imageset="|".join(IMAGE_SETS),
    arch="|".join(ARCHS),
    testset="|".join(BS_EVAL_SETS),
    tbset="|".join(TB_SETS) if TB_SETS else "(?!)",
    variant="baseline|bone_suppressed|control",
    fold=r"\d+",
    repeat=r"[1-9]\d*",


def dataset_seed(name):
    """A stable per-data-set seed derived from the global one (crc32, not Python's salted hash)."""
    return (config["seed"] + zlib.crc32(name.encode())) % (2**31)


def repeat_seed(repeat):
    """Repeat r fine-tunes with seed + 1000 r (fold k adds k, so seeds never collide)."""
    return config["seed"] + 1000 * int(repeat)


# The contrast stretch every stack, checkpoint and suppression uses; jobs get it as params.
LOW_PCT = config["preprocess"].get("low_percentile", 1.0)
HIGH_PCT = config["preprocess"].get("high_percentile", 99.0)


def preprocess_params():
    return {
        "size": config["image_size"],
        "max_pixels": config["max_image_pixels"],
        **config["preprocess"],
    }


def weights_input(wildcards):
    name = config["cls"]["weights"]
    return [f"resources/{name}/source.json"] if name else []


def pretrained_weights(wildcards):
    """The weight file bs.pretrained names: its changes rerun use_pretrained_bs and what follows."""
    from cxrbs.bs.pretrained import resolve_pretrained

    return [str(resolve_pretrained(str(PRETRAINED)))] if PRETRAINED else []


def variant_stack(tbset, variant):
    """The prepared stack a TB set's arm is fine-tuned and explained on (cxrbs.core.layout owns
    the mapping; the scripts read the same paths through Layout)."""
    return str(WORKFLOW.variant_stack(tbset, variant))


def cls_images(wildcards):
    return variant_stack(wildcards.tbset, wildcards.variant)


# The lung measures of the explain stage compare arms, so they need the baseline and another one.
# cls.lung_crop, read once by the package (crop_settings): {TB set: {"mask_dir", "margin"}} for
# the sets whose classifiers see lung crops. Rules carry it only where it is set, so that params of
# sets without a crop stay what they were before the key existed and nothing reruns for it.
LUNG_CROP = {t: s for t in TB_SETS if (s := crop_settings(config, t)) is not None}


def finetune_params(wildcards):
    """cls.finetune, plus the set's lung crop where it has one (popped by finetune_cls.py)."""
    crop = LUNG_CROP.get(wildcards.tbset)
    return {**config["cls"]["finetune"], **({"lung_crop": crop} if crop else {})}


ARM_MEASURES = bool(TB_SETS) and "baseline" in VARIANTS and len(VARIANTS) > 1


def pretrained_exclude():
    """bs.pretrained with a split file beside it (bundled models ship one): its train and val
    patients are left out of 'validation' / 'heldout_test'; a declared input, so it is tracked."""
    from cxrbs.bs.pretrained import pretrained_split

    path = pretrained_split(str(PRETRAINED)) if PRETRAINED else None
    return {"exclude": str(path)} if path else {}


def eval_pairs(wildcards):
    """Paired inputs; 'validation' / 'heldout_test' read the training set's val / test split
    (less a pretrained model's own patients, pretrained_exclude)."""
    if wildcards.testset == SELECTION_SET:
        return {
            "images": "results/bs/data/val.npy",
            "manifest": "results/bs/data/split.csv",
            **pretrained_exclude(),
        }
    if wildcards.testset == "heldout_test":
        return {
            "images": "results/bs/data/test.npy",
            "manifest": "results/bs/data/split.csv",
            **pretrained_exclude(),
        }
    return {
        "images": f"results/data/{wildcards.testset}/images.npy",
        "manifest": f"results/data/{wildcards.testset}/manifest.csv",
    }


def all_targets():
    targets = [
        "results/bs/eval/summary.csv",
        "results/bs/best.json",
        expand("results/suppressed/{tbset}/manifest.csv", tbset=TB_SETS),
        "results/cls/metrics.csv",
        "results/cls/comparison.csv",
        "results/report.html",
    ]
    if ARM_MEASURES:
        targets.append("results/explain/arm_tests.csv")
    return targets


# --- bundle.smk: full-resolution scoring and packaging of the selected model
BUNDLE = config["bundle"]
BUNDLE_DIR = f"results/bundle/{BUNDLE['name']}"


def fullres_inputs(wildcards):
    """Original files of a paired set; 'validation' / 'heldout_test' via the training split."""
    if wildcards.testset in (SELECTION_SET, "heldout_test"):
        return {
            "manifests": expand("results/data/{imageset}/manifest.csv", imageset=BS_TRAIN),
            "split": "results/bs/data/split.csv",
            **pretrained_exclude(),
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


def rule_threads(name):
    """A rule's threads after --set-threads (an int; None where they depend on the job)."""
    value = workflow.get_rule(name).resources.get("_cores")
    return value if isinstance(value, int) else None


onstart:
    # Before the first job of a real run (not -n): how long the training will take here.
    from cxrbs.estimate import print_estimate

    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores (a cluster run with --jobs only)
        cores = 1
    threads = {r: rule_threads(r) for r in ("pretrain_cls", "finetune_cls")}
    print_estimate(config, Path.cwd(), cores, {r: t for r, t in threads.items() if t})
