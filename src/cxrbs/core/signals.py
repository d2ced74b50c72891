"""SIGTERM as a clean interrupt, like Ctrl-C.

SIGTERM's default action ends the process on the spot, so no ``finally`` runs and every write in
progress leaves its hidden temporary file behind. Batch schedulers (Slurm at a time limit,
Snakemake when a job is cancelled, ``kill``) send SIGTERM first and SIGKILL only later; turning
the first SIGTERM into an exception lets ``cxrbs.core.atomic`` delete its temporaries on the way
out. The exception subclasses ``KeyboardInterrupt`` so code that already cleans up after Ctrl-C
cleans up after SIGTERM too. The exit status is the shell's 128 + 15 = 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

EXIT_SIGTERM = 128 + int(signal.SIGTERM)  # 143, what a shell reports for a SIGTERM'd process
MESSAGE = "interrupted by SIGTERM; partial outputs removed"


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM while cleaning up ends the process the default way: the sender insists.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(MESSAGE)


def install_sigterm_handler() -> bool:
    """Turn SIGTERM into ``Terminated``; only the main thread may set handlers (else False)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True


def interrupted_exit(exc: KeyboardInterrupt, prog: str = "cxrbs") -> int:
    """Print the one line for an interrupt and return its exit status (143 SIGTERM, 130 Ctrl-C)."""
    if isinstance(exc, Terminated):
        print(f"{prog}: {MESSAGE}", file=sys.stderr)
        return EXIT_SIGTERM
    print(f"{prog}: interrupted", file=sys.stderr)
    return 130
