"""The names the schema, the CLI and the model registry must agree on, in one torch-free place.

The YAML schema cannot import Python, so tests/test_names.py checks that its enums, the CLI's
choices and the registry's entries equal these tables: adding a model or a metric in one place
and forgetting another fails a test instead of a run.
"""

from __future__ import annotations

#: Bone-suppression architectures (models registered with kind "bs"; config bs.architectures).
BS_ARCHITECTURES: tuple[str, ...] = ("ae_bs", "convnet_bs", "resnet_bs", "rl_bs", "unet_bs")
#: Classifiers (models registered with kind "cls"; config cls.model).
CLS_MODELS: tuple[str, ...] = ("resnet18", "small_cnn", "vgg16", "vgg16_bn")
#: How a bone-suppression model forms its output (models.base.OUTPUT_MODES).
OUTPUT_MODES: tuple[str, ...] = ("direct", "residual")
#: Image-quality metrics of bone suppression (bs.evaluate.METRICS; config bs.select_metric).
BS_METRICS: tuple[str, ...] = ("mae", "psnr", "ssim", "ms_ssim", "bsr", "bsr_energy")
#: Classification metrics reported per fold.
CLS_METRICS: tuple[str, ...] = ("accuracy", "auc", "sensitivity", "specificity", "precision",
                                "f1", "mcc")
#: Classifier inputs compared by the study (config cls.variants).
VARIANTS: tuple[str, ...] = ("baseline", "bone_suppressed")
#: The optional energy-matched non-bone change (issue 12's control arm).
OPTIONAL_VARIANTS: tuple[str, ...] = ("control",)
#: Mixed-precision modes (core.device.AMP_MODES; config *.amp; CLI --amp).
AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
#: Classifier optimisers and learning-rate schedules (config cls.*.optimizer / schedule).
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("plateau", "cosine")
#: Synthetic data-set layouts (data.phantoms.PHANTOM_KINDS; CLI phantoms --kind).
PHANTOM_KINDS: tuple[str, ...] = ("pairs", "des", "shenzhen", "montgomery", "cxr8",
                                  "scanner2")
#: Data-set roles and folder layouts (config datasets.*.role / layout).
DATASET_ROLES: tuple[str, ...] = ("bs_train", "bs_test", "pretrain", "tb", "weights")
DATASET_LAYOUTS: tuple[str, ...] = ("paired", "shenzhen", "montgomery", "class_folders", "rsna",
                                    "file")
#: NLM TB collections whose labels sit in the file name (CLI train-cls --layout).
TB_LAYOUTS: tuple[str, ...] = ("shenzhen", "montgomery")
#: How a pair's contrast stretch is chosen (config preprocess.pair_stretch).
PAIR_STRETCH: tuple[str, ...] = ("shared", "independent")
#: Output formats of `cxrbs suppress --format`.
OUTPUT_FORMATS: tuple[str, ...] = ("png", "dicom")
