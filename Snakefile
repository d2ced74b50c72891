# cxr-bone-suppression: bone suppression of chest X-rays and its effect on TB classification
# (Rajaraman et al., Diagnostics 2021), as a Snakemake workflow. README.md explains each stage.
from snakemake.utils import min_version

min_version("8.20")


# `--configfile config/demo.yaml` replaces the paper-scale config instead of being merged into it.
if not config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/bone_suppression.smk"
include: "workflow/rules/classification.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bundle.smk"


rule all:
    default_target: True
    input:
        all_targets(),
