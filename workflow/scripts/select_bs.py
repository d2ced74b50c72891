import json
import logging
from pathlib import Path

import pandas as pd

from cxrbs.core.atomic import write_json
from cxrbs.bs.evaluate import select_best
from cxrbs.bs.pretrained import pretrained_choice
from cxrbs.core.snakemake_glue import run


def main(sm):
    """The decision only: which checkpoint is used, and why (the paired tests are paired_bs)."""
    summary = pd.read_csv(sm.input.summary)
    pretrained = list(getattr(sm.input, "pretrained", None) or [])
    if pretrained:  # bs.pretrained: one candidate, recorded, not selected
        info = json.loads(Path(pretrained[0]).read_text(encoding="utf-8"))
        choice = pretrained_choice(summary, info, metric=sm.params.metric)
    else:
        choice = select_best(summary, metric=sm.params.metric,
                             selection_set=sm.params.selection_set)
    logging.getLogger("cxrbs").info("%s", choice["reason"])
    write_json(sm.output.best, choice)


run(snakemake, main)  # noqa: F821
