"""Safe extraction of third-party archives: zip and tar(.gz/.bz2/.xz), all or nothing.

Archives come from third parties, so every member is checked before a single byte is written
(absolute names, ``..`` escapes, links leaving the target, devices and FIFOs are refused), free
space is checked against the members' sizes, and extraction happens in a temporary sibling folder
that is renamed into place only when it succeeded.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cxrbs.core.atomic import ensure_dir
from cxrbs.core.errors import CxrbsError

__all__ = ["archive_kind", "safe_extract"]


@dataclass(frozen=True)
class _Member:
    """An archive member reduced to what the safety check needs, for zip and tar alike."""

    name: str
    kind: str  # file | dir | symlink | hardlink | device | other
    size: int = 0
    target: str | None = None


def archive_kind(path: str | os.PathLike[str]) -> str | None:
    """'zip', 'tar' or None, judged by content because downloaded names are often misleading."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"PK\x03\x04", b"PK\x05\x06") and zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    if zipfile.is_zipfile(path):  # zip with data prepended (self-extracting)
        return "zip"
    return None


def safe_extract(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, progress: bool = False
) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest`` or refuse it as a whole.

    Refused: absolute names, ``..`` escapes, links whose target leaves ``dest``, paths that go
    through a link member, devices and FIFOs. All members are checked before anything is
    written, and extraction goes to a temporary sibling renamed to ``dest`` at the end, so a
    refused or failed archive leaves nothing under ``dest``. Tar extraction additionally uses
    Python's ``filter='data'``.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if kind is None:
        raise CxrbsError(
            f"{archive} is not a zip or tar archive (or is missing/corrupt): download it again"
        )
    _claim_dest(dest)
    try:
        opener = zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive)
        with opener as handle:
            members = (_zip_members(handle) if isinstance(handle, zipfile.ZipFile)
                       else _tar_members(handle))
            _check_members(archive, members)
            _check_space(archive, dest, members)
            _extract_into(handle, kind, dest, progress=progress)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CxrbsError(f"disk full while extracting {archive} to {dest}: free space") from exc
        raise CxrbsError(
            f"cannot extract {archive} to {dest}: {exc}; the archive may be incomplete: delete "
            f"it and download it again"
        ) from exc
    return dest


def _claim_dest(dest: Path) -> None:
    """Refuse to merge into an existing folder: the rename at the end needs an empty slot."""
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    elif dest.exists() or dest.is_symlink():
        raise CxrbsError(f"{dest} already exists: delete it to extract the archive again")
    ensure_dir(dest.parent)


def _zip_members(zf: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            # Python writes zip symlinks as small text files, but a target that escapes still
            # marks the archive as hostile.
            target = zf.read(info).decode("utf-8", "replace")
            members.append(_Member(info.filename, "symlink", 0, target))
        else:
            kind = "dir" if info.is_dir() else "file"
            members.append(_Member(info.filename, kind, info.file_size))
    return members


def _tar_members(tf: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tf.getmembers():
        if info.issym():
            members.append(_Member(info.name, "symlink", 0, info.linkname))
        elif info.islnk():
            members.append(_Member(info.name, "hardlink", 0, info.linkname))
        elif info.isdev():
            members.append(_Member(info.name, "device"))
        elif info.isdir():
            members.append(_Member(info.name, "dir"))
        elif info.isfile():
            members.append(_Member(info.name, "file", info.size))
        else:
            members.append(_Member(info.name, "other"))
    return members


def _check_members(archive: Path, members: list[_Member]) -> None:
    links = set()
    for m in members:
        if m.kind == "symlink":
            parts = _inside_parts(m.name, links=frozenset())
            if parts:
                links.add(parts)
    frozen = frozenset(links)
    for m in members:
        reason = _member_problem(m, frozen)
        if reason:
            raise CxrbsError(
                f"refusing to extract {archive}: member {m.name!r} {reason}; nothing was "
                f"extracted. The archive is corrupt or hostile: get it again from the "
                f"official source"
            )


def _member_problem(m: _Member, links: frozenset[tuple[str, ...]]) -> str | None:
    if m.kind in ("device", "other"):
        return "is a device, FIFO or other special file"
    if _is_absolute(m.name):
        return "has an absolute path"
    parts = _inside_parts(m.name, links)
    if parts is None:
        return "escapes the target folder (.. or a path through a link)"
    if not parts and m.kind != "dir":
        return "has an empty name"
    if m.kind in ("symlink", "hardlink"):
        target = m.target or ""
        if _is_absolute(target):
            return f"is a link to the absolute path {target!r}"
        # Symlink targets are relative to the link's folder, hardlink targets to the archive root.
        base = "/".join(parts[:-1]) if m.kind == "symlink" else ""
        if _inside_parts(f"{base}/{target}", links) is None:
            return f"is a link to {target!r}, outside the target folder"
    return None


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name))


def _inside_parts(name: str, links: frozenset[tuple[str, ...]]) -> tuple[str, ...] | None:
    """Normalised path components, or None when the path climbs out or walks through a link.

    Walking through a link member is refused because a lexical check cannot know where the
    link really points (``a -> ..`` then ``a/../x`` looks inside but is not).
    """
    stack: list[str] = []
    for part in re.split(r"[/\\]", name):
        if part in ("", "."):
            continue
        if stack and tuple(stack) in links:
            return None
        if part == "..":
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(part)
    return tuple(stack)


def _check_space(archive: Path, dest: Path, members: Iterable[_Member]) -> None:
    needed = sum(m.size for m in members)
    free = shutil.disk_usage(dest.parent).free
    if needed > free:
        raise CxrbsError(
            f"extracting {archive} needs {needed / 1e9:.1f} GB but {dest.parent} has only "
            f"{free / 1e9:.1f} GB free: free space or extract it elsewhere and set path:"
        )


def _extract_into(handle: Any, kind: str, dest: Path, *, progress: bool) -> None:
    tmp = dest.with_name(f".{dest.name}.extracting-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if kind == "zip":
            for info in tqdm(handle.infolist(), desc=dest.name, unit="file", disable=not progress):
                handle.extract(info, tmp)
        else:
            _extract_tar(handle, tmp, progress=progress)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract_tar(tf: tarfile.TarFile, tmp: Path, *, progress: bool) -> None:
    extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    members = tqdm(tf.getmembers(), desc=tmp.name, unit="file", disable=not progress)
    tf.extractall(tmp, members=members, **extra)
