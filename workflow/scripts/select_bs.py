import logging

import pandas as pd

from cxrbs.core.atomic import write_json
from cxrbs.bs.evaluate import select_best
from cxrbs.core.snakemake_glue import run


def main(sm):
    choice = select_best(pd.read_csv(sm.input[0]), metric=sm.params.metric,
                         selection_set=sm.params.selection_set)
    logging.getLogger("cxrbs").info("%s", choice["reason"])
    write_json(sm.output[0], choice)


run(snakemake, main)  # noqa: F821
