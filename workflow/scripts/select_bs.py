import json
from pathlib import Path

import pandas as pd

from cxrbs.bs.choice import write_choice
from cxrbs.core.snakemake_glue import run


def main(sm):
    """The decision only: which checkpoint is used, and why (the paired tests are paired_bs)."""
    pretrained = list(getattr(sm.input, "pretrained", None) or [])
    info = json.loads(Path(pretrained[0]).read_text(encoding="utf-8")) if pretrained else None
    write_choice(sm.output.best, pd.read_csv(sm.input.summary), metric=sm.params.metric,
                 selection_set=sm.params.selection_set, pretrained=info)


run(snakemake, main)  # noqa: F821
