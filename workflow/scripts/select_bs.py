import logging

import pandas as pd

from cxrbs.core.atomic import write_csv, write_json
from cxrbs.bs.evaluate import select_best
from cxrbs.bs.paired import identity_verdict, paired_tests
from cxrbs.core.snakemake_glue import run


def main(sm):
    choice = select_best(pd.read_csv(sm.input.summary), metric=sm.params.metric,
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
