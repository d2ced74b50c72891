"""The report's "Statistical methods" section, written from the config before any result is read.

A reviewer needs to see that the primary endpoint, the tests, the multiplicity adjustment, the
seeds and what was selected on what were fixed in advance: so this text is generated from the
config alone (never from results), and the report shows it above the results.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from cxrbs.bs.evaluate import HIGHER_IS_BETTER
from cxrbs.cls.compare import PRIMARY_ENDPOINT

TITLE = "Statistical methods"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _get(config: Mapping[str, Any], dotted: str, default: Any) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _items(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def statistical_methods_html(config: Mapping[str, Any]) -> str:
    """HTML (a heading and lists) describing the study's statistics as configured."""
    folds = int(_get(config, "cls.folds", 4))
    min_p = 2.0 / 2**folds
    repeats = int(_get(config, "cls.repeats", 1))
    seed = _get(config, "seed", 0)
    n_boot_cls = _get(config, "cls.n_boot", 2000)
    n_boot_bs = _get(config, "bs.n_boot", 2000)
    threshold = _get(config, "cls.threshold", 0.5)
    select_metric = _get(config, "bs.select_metric", "psnr")
    val_fraction = _get(config, "bs.val_fraction", 0.1)
    test_fraction = _get(config, "bs.test_fraction", 0.2)
    variants = list(_get(config, "cls.variants", ["baseline", "bone_suppressed"]))
    endpoint = _get(config, "cls.primary_endpoint", PRIMARY_ENDPOINT)

    primary = _items([
        f"<b>Primary endpoint</b> (declared in the configuration, <code>cls.primary_endpoint</code>, "
        f"before any result): {_esc(endpoint)}. The classifier's out-of-fold predictions of the "
        f"{folds} patient-level folds are pooled per TB data set; the difference of the two "
        "variants' ROC AUCs on the same images is tested with DeLong's test for correlated AUCs "
        "(midrank formulation), and the p-values of the TB data sets are Holm-adjusted as one "
        "family. Only this endpoint decides whether bone suppression helped.",
        "Beside the pooled AUC, the per-fold AUC (mean ± SD over the folds) is shown, because the "
        "pooled value mixes the score scales of the fold models.",
    ])
    secondary = _items([
        "<b>Secondary comparisons</b>, per TB data set and metric (accuracy, AUC, sensitivity, "
        f"specificity, precision, F1, MCC at threshold {_esc(threshold)}): an exact sign-flip "
        f"permutation test over the {folds} folds (all {2**folds} sign patterns; the smallest "
        f"attainable two-sided p with {folds} folds is {min_p:.3g}), with a 95% CI from the "
        "Nadeau–Bengio corrected resampled t (the folds share training data), and McNemar's "
        "test on pooled accuracy (exact binomial below 25 discordant pairs). All secondary "
        "p-values are Holm-adjusted together; the table shows raw and adjusted p beside each other "
        "and figures colour by the adjusted p.",
        "Undefined tests (zero standard error with a non-zero difference, zero spread over folds) "
        "report no p-value (NaN) and the reason, never 0.",
    ])
    seeds = _items([
        f"Every random step (splits, augmentation, initialisation, bootstrap) takes its seed from "
        f"the configuration (seed {_esc(seed)}).",
        (f"Fine-tuning is repeated with {repeats} seeds on the same folds; the AUC difference is "
         "reported per repeat with its spread, and the primary test is done per repeat and on the "
         "predictions averaged over repeats." if repeats > 1 else
         "Fine-tuning is run once per fold and variant (cls.repeats = 1): seed-to-seed training "
         "noise is not estimated in this run; set cls.repeats > 1 to estimate it."),
    ])
    intervals = _items([
        "Metric intervals: Wilson for proportions and DeLong for AUC when every image is its own "
        f"patient; otherwise, and always for F1 and MCC, a percentile bootstrap over patients "
        f"({_esc(n_boot_cls)} resamples).",
        "Bone-suppression quality: mean with a t-based 95% CI per model and test set; paired "
        "per-image tests of each model against the identity baseline (prediction = input) and of "
        "the selected model against each other model: Wilcoxon signed-rank with a seeded "
        f"percentile-bootstrap CI of the mean difference ({_esc(n_boot_bs)} resamples), "
        "Holm-adjusted within each test set.",
    ])
    pretrained = _get(config, "bs.pretrained", None)
    bs_choice = (
        f"Pretrained bone-suppression model {_esc(pretrained)} used; bone-suppression training "
        "skipped (<code>bs.pretrained</code>). It is the only candidate: nothing was selected, "
        "and every bone-suppression set it is scored on is only reported."
        if pretrained else
        f"The bone-suppression training pairs are split by patient into training, validation "
        f"({_esc(val_fraction)} of the patients) and a within-institution test part "
        f"(<code>heldout_test</code>, {_esc(test_fraction)}). Early stopping and the choice of "
        f"architecture ({'highest' if HIGHER_IS_BETTER.get(select_metric, True) else 'lowest'} "
        f"mean {_esc(select_metric)}) use the validation pairs only; the "
        "within-institution test part and every cross-institution set are only reported.")
    selection = _items([
        bs_choice,
        "Classifiers stop early on an inner patient-level validation split of the training folds; "
        "the held-out fold is used only for the out-of-fold predictions.",
    ])
    if "control" in variants:
        control = ("A <b>control</b> arm applies an image change of the same energy that is not "
                   "bone removal, through the same folds, seeds and tests. Evidence that removing "
                   "bones (not merely altering the images) changed the scores requires the "
                   "bone-suppressed arm to beat both the baseline (primary endpoint) and the "
                   "control arm, while the control arm does not beat the baseline.")
    else:
        control = ("No control arm was run (cls.variants has no <code>control</code>): a "
                   "difference between the arms cannot be attributed to removing bones rather "
                   "than to altering the images at all.")
    return "\n".join([
        f"<h3>{TITLE}</h3>",
        "<h4>Primary endpoint</h4>", primary,
        "<h4>Secondary comparisons and adjustment</h4>", secondary,
        "<h4>Seeds and repeats</h4>", seeds,
        "<h4>Confidence intervals and paired tests</h4>", intervals,
        "<h4>What was selected on what</h4>", selection,
        "<h4>Arms</h4>", f"<p>{control}</p>",
    ])
