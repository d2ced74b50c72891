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
from cxrbs.cls.compare import CLAIMED_EFFECT, EQUIVALENCE_MARGIN, PRIMARY_ENDPOINT
from cxrbs.cls.stats import detectable_auc_difference

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


#: Published sizes (TB, normal) of the TB sets by folder layout (see ../shared/STUDY.md).
KNOWN_SIZES = {"shenzhen": (336, 326), "montgomery": (58, 80)}


def tb_set_sizes(config: Mapping[str, Any]) -> dict[str, tuple[int, int] | None]:
    """TB set -> (TB images, normal images) as configured: cls.power.sizes, else the published
    size of its layout, else n/2 each for a synthetic set; None when unknown."""
    declared = _get(config, "cls.power.sizes", {}) or {}
    out: dict[str, tuple[int, int] | None] = {}
    for name, spec in (_get(config, "datasets", {}) or {}).items():
        if not isinstance(spec, Mapping) or spec.get("role") != "tb":
            continue
        synthetic = spec.get("synthetic") or {}
        if name in declared:
            out[name] = (int(declared[name][0]), int(declared[name][1]))
        elif synthetic.get("n"):
            n = int(synthetic["n"])
            out[name] = (n // 2, n - n // 2)
        else:
            out[name] = KNOWN_SIZES.get(str(spec.get("layout", name)), KNOWN_SIZES.get(name))
    return out


def power_items(config: Mapping[str, Any]) -> list[str]:
    """The smallest detectable ΔAUC per TB set at the configured sizes (before any result)."""
    auc = float(_get(config, "cls.power.auc", 0.9))
    corr = float(_get(config, "cls.power.correlation", 0.5))
    model_sd = float(_get(config, "cls.power.model_sd", 0.01))
    repeats = int(_get(config, "cls.repeats", 1))
    claimed = float(_get(config, "cls.claimed_effect", CLAIMED_EFFECT))
    lines = []
    for name, size in tb_set_sizes(config).items():
        if size is None:
            lines.append(f"{_esc(name)}: size unknown (declare it in "
                         "<code>cls.power.sizes</code>)")
            continue
        mde = detectable_auc_difference(*size, auc=auc, correlation=corr, model_sd=model_sd,
                                        repeats=repeats)
        flag = (" &mdash; <b>underpowered</b> for the claimed gain" if mde > claimed else "")
        lines.append(f"{_esc(name)} ({size[0]} TB / {size[1]} normal): smallest detectable "
                     f"ΔAUC {mde:.3f}{flag}")
    head = (f"<b>Power, stated before any result</b>: smallest AUC difference the primary test "
            f"detects with 80% power at two-sided alpha 0.05 (normal approximation; "
            f"Hanley–McNeil variance at AUC {auc:g}, correlation {corr:g} between the arms' "
            f"AUCs, seed SD {model_sd:g} of one arm's AUC averaged over {repeats} repeat(s); "
            f"<code>cls.power</code>). The study claims a gain of {claimed:g} "
            "(<code>cls.claimed_effect</code>); a result row whose observed standard error "
            "could not detect that gain says <i>underpowered</i>.")
    return [head + (_items(lines) if lines else " No TB set configured.")]


def _items(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def statistical_methods_html(config: Mapping[str, Any]) -> str:
    """HTML (a heading and lists) describing the study's statistics as configured."""
    folds = int(_get(config, "cls.folds", 4))
    min_p = 2.0 / 2**folds
    repeats = int(_get(config, "cls.repeats", 1))
    seed = _get(config, "seed", 0)
    n_boot_cls = _get(config, "cls.n_boot", 2000)
    threshold = _get(config, "cls.threshold", 0.5)
    select_metric = _get(config, "bs.select_metric", "psnr")
    val_fraction = _get(config, "bs.val_fraction", 0.1)
    test_fraction = _get(config, "bs.test_fraction", 0.2)
    variants = list(_get(config, "cls.variants", ["baseline", "bone_suppressed"]))
    endpoint = _get(config, "cls.primary_endpoint", PRIMARY_ENDPOINT)

    primary = _items([
        f"<b>Primary endpoint</b> (declared in the configuration, <code>cls.primary_endpoint</code>, "
        f"before any result): {_esc(endpoint)}. The estimand is the difference of the two "
        "variants' ROC AUCs on the same images, computed from the classifier's out-of-fold "
        f"predictions of the {folds} patient-level folds, pooled per TB data set and averaged over "
        f"the {repeats} fine-tuning repeat(s). Its variance is DeLong's (image sampling; midrank "
        "formulation) plus the between-seed variance of the per-repeat AUC difference divided by "
        "the number of repeats (training variance: a fitted model's AUC moves from seed to seed, "
        f"which DeLong alone treats as fixed; <code>cls.seed_variance</code> = "
        f"{_esc(_get(config, 'cls.seed_variance', 'full'))}), with a t reference distribution "
        "(Welch–Satterthwaite degrees of freedom). The p-values of the TB data sets are "
        "Holm-adjusted as one family: one decisive p per TB set. Only this endpoint decides "
        "whether bone suppression helped.",
        ("Rows per repeat (column <code>repeat</code>) show each repeat's AUC difference and the "
         "SD over repeats, without a p-value: they describe the seed-to-seed spread and decide "
         "nothing." if repeats > 1 else
         "With one fine-tuning repeat (cls.repeats = 1) the training variance cannot be "
         "estimated: the primary p treats the fitted models as fixed and is optimistic "
         "(set cls.repeats to 5 or more)."),
        "Beside the pooled AUC, the per-fold AUC (mean ± SD over the folds) is shown, because the "
        "pooled value mixes the score scales of the fold models.",
        *power_items(config),
    ])
    secondary = _items([
        "<b>Secondary comparisons</b>, per TB data set and metric (accuracy, AUC, sensitivity, "
        f"specificity, precision, F1, MCC at threshold {_esc(threshold)}): the mean per-fold "
        f"difference over the {folds} folds with its p-value and 95% CI from one method, the "
        "Nadeau–Bengio corrected resampled t (k−1 df; the folds share training data), whose "
        "test/train ratio is taken from the actual fold sizes net of the inner validation split; "
        f"the exact sign-flip p is in the note (the smallest attainable two-sided p with {folds} "
        f"folds is {min_p:.3g}), and McNemar's test on pooled accuracy (exact binomial below 25 "
        "discordant pairs). All secondary p-values are Holm-adjusted together; the table shows "
        "raw and adjusted p beside each other and figures colour by the adjusted p.",
        "Undefined tests (zero standard error with a non-zero difference, zero spread over folds) "
        "report no p-value (NaN) and the reason, never 0.",
    ])
    seeds = _items([
        f"Every random step (splits, augmentation, initialisation, bootstrap) takes its seed from "
        f"the configuration (seed {_esc(seed)}).",
        (f"Fine-tuning is repeated with {repeats} seeds on the same folds; the primary test is "
         "done once, on the predictions averaged over the repeats with the between-seed variance "
         "in it; the AUC difference per repeat is reported with its spread, without a test."
         if repeats > 1 else
         "Fine-tuning is run once per fold and variant (cls.repeats = 1): seed-to-seed training "
         "noise is not estimated in this run; set cls.repeats > 1 to estimate it."),
    ])
    intervals = _items([
        "Metric intervals: Wilson for proportions and DeLong for AUC when every image is its own "
        f"patient; otherwise, and always for F1 and MCC, a percentile bootstrap over patients "
        f"({_esc(n_boot_cls)} resamples).",
        "Bone-suppression quality: mean with a t-based 95% CI per model and test set; paired "
        "per-image tests of each model against the identity baseline (prediction = input) and of "
        "the selected model against each other model, one estimand per test: the Hodges–Lehmann "
        "median of the per-image differences, the Wilcoxon signed-rank test and the CI obtained by "
        "inverting that same test (exact up to 50 untied pairs), Holm-adjusted within each test "
        "set. A model beats the identity baseline on a metric only when the adjusted p is below "
        "0.05 and the whole CI lies on the better side of 0, never from the means alone.",
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
    margin = _get(config, "cls.equivalence_margin", EQUIVALENCE_MARGIN)
    if "control" in variants:
        control = ("A <b>control</b> arm (sham) alters the images like bone suppression does "
                   "without removing bones: each image receives the low-pass part of its own "
                   "bone-suppression change plus the high-pass part of that change with "
                   "randomised Fourier phases (same energy and spectrum, no longer aligned with "
                   "the ribs); no change ever comes from another image or fold. It runs through "
                   "the same folds, seeds and tests. Evidence that removing bones (not merely "
                   "altering the images) changed the scores requires, on top of the primary "
                   "endpoint, (a) bone_suppressed − control, a gatekept hypothesis tested only "
                   "after every primary hypothesis is rejected (serial gatekeeping: Holm across "
                   "TB sets, adjusted p raised to the largest primary adjusted p), and (b) "
                   "control − baseline shown equivalent within ±"
                   f"{_esc(margin)} AUC (<code>cls.equivalence_margin</code>; two one-sided "
                   "tests, 90% CI inside the margin), never inferred from a non-significant "
                   "difference.")
    else:
        control = ("No control arm was run (cls.variants has no <code>control</code>): a "
                   "difference between the arms cannot be attributed to removing bones rather "
                   "than to altering the images at all.")
    rest = "\n".join([
        "<h4>Secondary comparisons and adjustment</h4>", secondary,
        "<h4>Seeds and repeats</h4>", seeds,
        "<h4>Confidence intervals and paired tests</h4>", intervals,
        "<h4>What was selected on what</h4>", selection,
        "<h4>Arms</h4>", f"<p>{control}</p>",
    ])
    # the section heading (TITLE) is the report's h2: no second heading here
    return "\n".join([
        "<h4>Primary endpoint</h4>", primary,
        "<details><summary>Secondary comparisons, seeds and repeats, confidence intervals and "
        "paired tests, what was selected on what, arms</summary>", rest, "</details>",
    ])
