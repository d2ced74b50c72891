"""Progress that reaches a person either way: a bar on a terminal, log lines in a redirected log.

A cluster job or ``nohup`` run has no terminal, so tqdm is off there; without these lines such a
log says nothing until the end of a run over thousands of files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")


def progress_iter(items: Sequence[T], *, desc: str, bar: bool, unit: str = "file",
                  every_s: float = 10.0, every_n: int | None = None) -> Iterator[T]:
    """Yield ``items``; with ``bar`` show tqdm, else log "desc: i/n unit(s) done" periodically.

    Lines come every ``every_n`` items (default: every 10, or every 5% of a long run) or every
    ``every_s`` seconds, whichever is first, and once at the end.
    """
    if bar:
        yield from tqdm(items, desc=desc, unit=unit)
        return
    total = len(items)
    step = every_n or max(10, total // 20)
    start = last = time.monotonic()
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if i == total or i % step == 0 or now - last >= every_s:
            log.info("%s: %d/%d %s(s) done (%.0f s)", desc, i, total, unit, now - start)
            last = now
