"""Write-then-rename helpers, so a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxrbs.errors import CxrbsError


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create a folder (and parents), turning permission/disk errors into a CxrbsError naming it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrbsError(f"cannot create folder {p}: {exc.strerror or exc}") from exc
    return p


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``final``, on failure delete it.

    The temporary name keeps the suffix so libraries that dispatch on the extension still work.
    """
    final = Path(final)
    ensure_dir(final.parent)
    tmp = final.with_name(f".{final.stem}.tmp{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        _unlink_quietly(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CxrbsError(f"disk full while writing {final}: free space and run again") from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CxrbsError(f"cannot write {final}: permission denied ({exc.strerror})") from exc
        raise CxrbsError(f"cannot write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame atomically (index dropped)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_npy(path: str | os.PathLike[str], array: Any) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
