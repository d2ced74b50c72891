from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.cls.pipeline import compare
from cxrbs.cls.plan import PLAN_COLUMN, read_plan
from cxrbs.core.snakemake_glue import run


def main(sm):
    plan = getattr(sm.input, "plan", None)
    predictions = [Path(p) for p in sm.input if p != plan]
    frame = compare(predictions, threshold=sm.params.threshold,
                    primary_endpoint=sm.params.primary_endpoint,
                    equivalence_margin=sm.params.equivalence_margin,
                    claimed_effect=sm.params.claimed_effect,
                    inner_val_fraction=sm.params.inner_val_fraction,
                    seed_variance=sm.params.seed_variance)
    if plan:  # the analysis plan this comparison was computed under (issue 22 item 8)
        frame[PLAN_COLUMN] = (read_plan(Path(plan)) or {}).get("sha256", "")
    write_csv(sm.output[0], frame)


run(snakemake, main)  # noqa: F821
