"""File checksums: one SHA-256 implementation for downloads, checkpoints and bundled models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cxrbs.core.errors import CxrbsError

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB archives do not fill memory."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        why = exc.strerror or exc
        raise CxrbsError(f"cannot read {path} to check its checksum: {why}") from exc
