"""Write-then-rename helpers, so a crash never leaves a half-written file under its final name.

The temporary file and its folder are fsynced before and after the rename, so after a power
loss the final name holds either the old or the complete new file. The rename never replaces
anything but a regular file: a device (``-o /dev/null``), a FIFO or a folder given as an output
is refused with one line, since renaming over ``/dev/full`` would replace the device itself. A
symbolic link is written through: its target is replaced (atomically, as any output), the link
stays a link.

A process killed mid-write (SIGKILL, OOM killer, node failure) cannot delete its temporary file;
``ensure_dir`` removes such leftovers the next time a job prepares the folder, and only those of
dead processes on this host, so a concurrent writer on another node of a shared file system
never loses its file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxrbs.core.errors import CxrbsError

log = logging.getLogger(__name__)

# Host names may hold dots; dropping them keeps the file's suffix (e.g. ".npy") the last one.
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(r"^\..*\.tmp(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]+)(?:\.[^.]*)?$")


def _mkdir(p: Path) -> Path:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CxrbsError(f"cannot create folder {p}: {exc.strerror or exc}") from exc
    return p


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create an output folder (and parents) and clear temporaries that crashed writers left.

    Permission/disk errors become a CxrbsError naming the folder.
    """
    p = _mkdir(Path(path))
    remove_stale_temps(p)
    return p


def temp_path(final: str | os.PathLike[str]) -> Path:
    """The hidden sibling a write goes to first; it keeps the suffix for libraries that need it."""
    final = Path(final)
    return final.with_name(f".{final.stem}.tmp{os.getpid()}-{_HOST}{final.suffix}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host; unsure answers count as alive (the file is kept)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files of this module whose writer (same host) no longer runs."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                log.info("removed %s, left by a writer that crashed", entry.path)
    return removed


def check_replaceable(final: str | os.PathLike[str]) -> None:
    """Refuse a final path that exists and is not a regular file (symbolic links are followed:
    a link to a regular file is replaced as before, a link to a device is refused)."""
    try:
        st = os.stat(final)
    except OSError:
        return  # missing (or a dangling link): nothing to lose
    if stat.S_ISREG(st.st_mode):
        return
    kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
            or stat.S_ISBLK(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    raise CxrbsError(f"output {final} exists and is {kind}, not a file: refusing to replace it; "
                     "give the path of a regular file to write")


def _fsync_file(path: Path) -> None:
    """Flush a written temporary to disk; only regular files (a test may link it to a device)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some file systems cannot fsync a folder: not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_target(final: str | os.PathLike[str]) -> Path:
    """The file a write to ``final`` replaces: ``final`` itself, or for a symbolic link (a chain
    of them included) the file it points to, so the link stays and its target changes.

    A link whose target folder is missing, or a loop of links, is refused with one line.
    """
    final = Path(final)
    if not final.is_symlink():
        return final
    target = Path(os.path.realpath(final))
    if target.is_symlink():  # realpath stops inside a loop of links
        raise CxrbsError(f"output {final} is a loop of symbolic links: refusing to write; give "
                         "the path of a regular file")
    if not target.parent.is_dir():
        raise CxrbsError(f"output {final} is a symbolic link to {target}, whose folder does not "
                         "exist: fix the link or remove it")
    log.debug("writing %s through the link %s", target, final)
    return target


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; on success fsync and rename it onto ``final``, on failure
    (or interrupt) delete it. ``final`` must not exist or be a regular file; a symbolic link is
    written through (its target is replaced, see :func:`write_target`)."""
    final = write_target(final)
    check_replaceable(final)  # before any work: a refused output costs nothing
    _mkdir(final.parent)
    tmp = temp_path(final)
    try:
        yield tmp
        _fsync_file(tmp)
        check_replaceable(final)  # it may have appeared while we wrote
        os.replace(tmp, final)
        _fsync_dir(final.parent)
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


def preallocate(path: str | os.PathLike[str]) -> None:
    """Reserve a sparse file's blocks now: a full disk then fails here with ENOSPC, instead of
    killing the process with SIGBUS when a page of a memory map is first written."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: no cheap way, keep the sparse file
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
    finally:
        os.close(fd)


def open_memmap(path: str | os.PathLike[str], dtype: Any, shape: tuple[int, ...]) -> Any:
    """A new ``.npy`` memory map whose disk space is reserved up front (see ``preallocate``)."""
    import numpy as np

    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    preallocate(path)
    return arr


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
    """Save through an unbuffered file: torch's own writer reports a full disk as an opaque
    RuntimeError ("unexpected pos"), a Python file object raises OSError(ENOSPC)."""
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb", buffering=0) as fh:
            torch.save(obj, fh)
