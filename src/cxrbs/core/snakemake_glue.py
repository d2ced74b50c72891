"""What every workflow script shares: logging into the rule's log file, one-line user errors, and
SIGTERM (a cancelled job) as a clean interrupt that removes partial outputs (exit 143)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from cxrbs.core.errors import CxrbsError
from cxrbs.core.signals import EXIT_SIGTERM, MESSAGE, Terminated, install_sigterm_handler


def configure_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.captureWarnings(True)


_job_rule: str | None = None


def workflow_job() -> str | None:
    """The rule whose job runs in this process (inside :func:`run`), else None (the CLI).

    Messages deep in the package use it to give workflow advice in a workflow log (which rule
    rebuilds a damaged file) instead of command-line advice.
    """
    return _job_rule


def run(snakemake: Any, main: Callable[[Any], Any]) -> None:
    """Run ``main(snakemake)``; a CxrbsError becomes one clear line in the log and exit status 1,
    a SIGTERM one line and exit status 143 after the temporaries were removed."""
    global _job_rule
    configure_logging(snakemake.log[0] if snakemake.log else None)
    install_sigterm_handler()
    if getattr(snakemake, "threads", None):
        import torch

        torch.set_num_threads(int(snakemake.threads))
    try:
        rule = snakemake.rule
    except (AttributeError, KeyError):  # test doubles and old Snakemake versions lack it
        rule = None
    _job_rule = str(rule or "workflow")
    try:
        main(snakemake)
    except CxrbsError as exc:
        logging.getLogger("cxrbs").error("%s", exc)
        sys.exit(1)
    except Terminated:
        logging.getLogger("cxrbs").error("%s", MESSAGE)
        sys.exit(EXIT_SIGTERM)
    finally:
        _job_rule = None

