import json
from pathlib import Path

import pandas as pd

from cxrbs.core.atomic import write_csv, write_json
from cxrbs.bs.paired_stats import identity_verdict, paired_tests
from cxrbs.core.snakemake_glue import run


def main(sm):
    """Per-image paired tests of every model against identity and of the chosen one against the
    others; the chosen model comes from best.json, the bootstrap settings from params."""
    choice = json.loads(Path(sm.input.best).read_text(encoding="utf-8"))
    per_image = pd.concat([pd.read_csv(p, dtype={"name": str}) for p in sm.input.per_image],
                          ignore_index=True)
    paired = paired_tests(per_image, selected=choice["arch"], n_boot=sm.params.n_boot,
                          seed=sm.params.seed)
    verdict = identity_verdict(paired, selected=choice["arch"], metric=sm.params.metric)
    write_csv(sm.output.paired, paired)
    write_json(sm.output.verdict, {"arch": choice["arch"], "metric": sm.params.metric,
                                   "n_boot": sm.params.n_boot, "paired_vs_identity": verdict})


run(snakemake, main)  # noqa: F821
