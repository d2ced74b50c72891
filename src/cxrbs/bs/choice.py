"""``results/bs/best.json``: the one writer of the bone-suppression choice.

The decision is :func:`cxrbs.bs.evaluate.select_best`'s (validation pairs only) or, with
``bs.pretrained``, :func:`cxrbs.bs.pretrained.pretrained_choice`'s (one candidate, nothing
selected); :func:`write_choice` adds the checkpoint it names and writes the file whole.
The one reader is :meth:`cxrbs.core.layout.Layout.chosen_checkpoint`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbs.bs.evaluate import SELECTION_SET, select_best
from cxrbs.bs.pretrained import pretrained_choice
from cxrbs.core.atomic import write_json
from cxrbs.core.layout import WORKFLOW

log = logging.getLogger(__name__)


def write_choice(path: str | Path, summary: pd.DataFrame, *, metric: str,
                 selection_set: str = SELECTION_SET,
                 pretrained: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Decide, write ``best.json`` to ``path`` and return what was written.

    ``summary`` is the evaluation summary (``bs/eval/summary.csv``); ``pretrained`` the
    ``pretrained.json`` record of a ``bs.pretrained`` run (then nothing is selected). The
    ``checkpoint`` field is relative to the workflow folder, as the workflow writes every path.
    """
    if pretrained is not None:
        choice = pretrained_choice(summary, pretrained, metric=metric)
    else:
        choice = select_best(summary, metric=metric, selection_set=selection_set)
    choice["checkpoint"] = WORKFLOW.relative(WORKFLOW.bs_checkpoint(str(choice["arch"])))
    log.info("%s", choice["reason"])
    write_json(path, choice)
    return choice
