import json
import logging
from pathlib import Path

import pandas as pd

from cxrbs.core.atomic import write_csv, write_json
from cxrbs.bs.evaluate import select_best
from cxrbs.bs.paired import identity_verdict, paired_tests
from cxrbs.bs.pretrained import pretrained_choice
from cxrbs.core.snakemake_glue import run


def main(sm):
    summary = pd.read_csv(sm.input.summary)
    pretrained = list(getattr(sm.input, "pretrained", None) or [])
    if pretrained:  # bs.pretrained: one candidate, recorded, not selected
        info = json.loads(Path(pretrained[0]).read_text(encoding="utf-8"))
        choice = pretrained_choice(summary, info, metric=sm.params.metric)
    else:
        choice = select_best(summary, metric=sm.params.metric,
                             selection_set=sm.params.selection_set)
    logging.getLogger("cxrbs").info("%s", choice["reason"])
    per_image = pd.concat([pd.read_csv(p, dtype={"name": str}) for p in sm.input.per_image],
                          ignore_index=True)
    paired = paired_tests(per_image, selected=choice["arch"], n_boot=sm.params.n_boot,
                          seed=sm.params.seed)
    choice["paired_vs_identity"] = identity_verdict(paired, selected=choice["arch"],
                                                    metric=sm.params.metric)
    write_csv(sm.output.paired, paired)
    write_json(sm.output.best, choice)


run(snakemake, main)  # noqa: F821
