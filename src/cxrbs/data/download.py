"""Fetch the public data sets: resumable downloads, checksums, and turning a config entry
(``path``, ``url``, ``registration``) into a folder of raw files.

Data sets here are tens of GB behind slow servers, so an interrupted download keeps its
``.part`` file and the next run resumes it with an HTTP Range request. Unpacking is
``cxrbs.data.extract``'s job (all-or-nothing, never outside its target folder).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cxrbs.core.atomic import ensure_dir, write_json
from cxrbs.core.config import config_file_name as _config_file
from cxrbs.core.errors import CxrbsError
from cxrbs.core.hashing import sha256_file
from cxrbs.data.extract import archive_kind, safe_extract

__all__ = ["fetch_url", "sha256_file", "safe_extract", "materialize_source", "archive_kind"]

MIN_DIGEST_PREFIX = 8
_USER_AGENT = "cxrbs/0.1 (python urllib; chest X-ray bone suppression workflow)"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
def _manual_hint() -> str:
    return f"download it manually, unpack it, and set path: for this data set in {_config_file()}"



# --------------------------------------------------------------------------- checksums


def _normalize_digest(sha256: str, url: str) -> str:
    """Lower-case hex digest or prefix; a prefix of at least 8 characters is accepted.

    Prefixes exist in the wild: torchvision's ``vgg16-397923af.pth`` carries the first 8 hex
    characters of its SHA-256 in the file name. Shorter prefixes match too easily by chance.
    """
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{%d,64}" % MIN_DIGEST_PREFIX, digest):
        raise CxrbsError(
            f"sha256 {sha256!r} given for {url} is not a hex SHA-256 digest (or a prefix of at "
            f"least {MIN_DIGEST_PREFIX} hex characters): fix sha256: in the config"
        )
    return digest


# --------------------------------------------------------------------------- downloads


def fetch_url(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming a previous ``.part``) and verify its SHA-256.

    ``sha256`` may be the full hex digest or a prefix of >= 8 hex characters. An existing
    ``dest`` that matches (or any existing ``dest`` when no checksum is given) is returned
    without touching the network, so reruns of the workflow are free; one that does not match
    is deleted and fetched again. ``file://`` URLs work too.
    """
    dest = Path(dest)
    expected = _normalize_digest(sha256, url) if sha256 else None
    if dest.is_file():
        if expected is None or sha256_file(dest).startswith(expected):
            return dest
        _unlink_quietly(dest)  # stale or corrupt: never leave a wrong file under the final name
    ensure_dir(dest.parent)
    part = dest.with_name(dest.name + ".part")
    _download_to_part(url, part, chunk_size=chunk_size, timeout=timeout, progress=progress)
    if expected is not None:
        actual = sha256_file(part)
        if not actual.startswith(expected):
            _unlink_quietly(part)
            raise CxrbsError(
                f"checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}; the "
                f"download was deleted and nothing was kept as {dest}. Check sha256: in the "
                f"config, or {_manual_hint()}"
            )
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise CxrbsError(f"cannot move {part} to {dest}: {exc.strerror or exc}") from exc
    return dest


def _download_to_part(
    url: str, part: Path, *, chunk_size: int, timeout: float, progress: bool
) -> None:
    """Append the missing bytes to ``part``; on return ``part`` holds the whole resource."""
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(url, part, offset, timeout)
    if response is None:  # 416: the part already holds every byte
        return
    with response:
        offset, total = _resume_point(response, offset, url, part)
        _copy_body(response, url, part, offset, total, chunk_size=chunk_size, progress=progress)


def _open(url: str, part: Path, offset: int, timeout: float) -> Any:
    """Open ``url`` asking for bytes from ``offset``; None means the part is already complete."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _parse_content_range(exc.headers.get("Content-Range"))[1]
            exc.close()
            if total == offset:
                return None
            _unlink_quietly(part)  # the part is longer than the resource or unknowable: restart
            return _open(url, part, 0, timeout)
        raise CxrbsError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}; {_manual_hint()}"
        ) from exc
    except ValueError as exc:
        raise CxrbsError(f"{url!r} is not a valid URL ({exc}): fix url: in the config") from exc
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CxrbsError(
            f"cannot download {url}: {reason}. Check the network, or {_manual_hint()}"
        ) from exc


def _resume_point(response: Any, offset: int, url: str, part: Path) -> tuple[int, int | None]:
    """Where the body starts and the full size, deciding between resuming and restarting."""
    status = getattr(response, "status", None)
    if offset and status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        if start == offset:
            return offset, total
        if start not in (0, None):
            raise CxrbsError(
                f"server for {url} answered a resume request with an unexpected range; delete "
                f"{part} and run again, or {_manual_hint()}"
            )
    # 200 (server ignored Range), file:// URLs, or a fresh download: start from zero.
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, full size) from ``bytes a-b/n`` or ``bytes */n``; None where unknown."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def _copy_body(
    response: Any,
    url: str,
    part: Path,
    offset: int,
    total: int | None,
    *,
    chunk_size: int,
    progress: bool,
) -> None:
    received = offset
    bar = tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(".part"),
        disable=not progress,
        leave=False,
    )
    try:
        with bar, open(part, "ab" if offset else "wb") as fh:
            while chunk := _read_chunk(response, url, part, received, total, chunk_size):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CxrbsError(f"disk full while writing {part}: free space and run again") from exc
        raise CxrbsError(f"cannot write {part}: {exc.strerror or exc}") from exc
    if total is not None and received < total:
        raise _interrupted(url, part, received, total, "connection closed early")


def _read_chunk(
    response: Any, url: str, part: Path, received: int, total: int | None, size: int
) -> bytes:
    try:
        return response.read(size)
    except (OSError, http.client.HTTPException) as exc:
        raise _interrupted(url, part, received, total, exc) from exc


def _interrupted(url: str, part: Path, received: int, total: int | None, why: object) -> CxrbsError:
    of_total = f" of {total}" if total is not None else ""
    return CxrbsError(
        f"download of {url} stopped after {received}{of_total} bytes ({why}); the partial file "
        f"{part} is kept: run again to resume, or {_manual_hint()}"
    )


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# --------------------------------------------------------------------------- data set sources


def materialize_source(
    spec: Mapping[str, Any],
    dest_dir: str | os.PathLike[str],
    *,
    name: str = "<name>",
    progress: bool = True,
) -> Path:
    """Return the folder holding one data set's raw files, downloading/unpacking when needed.

    ``spec`` is ``datasets.<name>`` from the config. Keys are used in the order ``path`` (the
    user's own copy: a folder is used in place, an archive is unpacked into ``dest_dir/files``),
    ``url`` (+ ``sha256``, ``filename``: saved in ``dest_dir/download``, unpacked into
    ``dest_dir/files`` when it is an archive), then ``registration`` (data behind a sign-up:
    raise, saying where to get it). A ``path`` therefore overrides the other two, which is
    how a user supplies a manually downloaded copy. When an archive unpacks to a single
    top-level folder, that folder is returned.
    """
    if not isinstance(spec, Mapping):
        raise CxrbsError(
            f"datasets.{name} in {_config_file()} must be a mapping with path:, url: or "
            f"registration:, not {type(spec).__name__}"
        )
    dest_dir = Path(dest_dir)
    if spec.get("path"):
        return _from_path(spec["path"], dest_dir, name)
    if spec.get("url"):
        return _from_url(spec, dest_dir, name, progress=progress)
    if spec.get("registration"):
        raise CxrbsError(
            f"data set {name} needs registration before it can be downloaded: "
            f"{spec['registration']}. Then set datasets.{name}.path in {_config_file()} to "
            f"the unpacked folder"
        )
    raise CxrbsError(
        f"datasets.{name} in {_config_file()} has none of path:, url: or registration: set "
        f"datasets.{name}.path to the folder holding the data"
    )


def _from_path(raw: Any, dest_dir: Path, name: str) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(str(raw))))
    if path.is_dir():
        return path
    if not path.exists():
        raise CxrbsError(
            f"datasets.{name}.path in {_config_file()} points to {path} "
            f"({path.absolute()}), which does not exist: fix the path"
        )
    if archive_kind(path) is None:
        raise CxrbsError(
            f"datasets.{name}.path points to {path}, which is neither a folder nor a zip/tar "
            f"archive: set it to the unpacked folder"
        )
    return _extract_once(path, dest_dir / "files")


def _from_url(spec: Mapping[str, Any], dest_dir: Path, name: str, *, progress: bool) -> Path:
    url = str(spec["url"])
    filename = str(spec.get("filename") or "")
    if not filename:
        filename = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not filename or filename in (".", "..") or re.search(r"[/\\]", filename):
        raise CxrbsError(
            f"cannot derive a file name from datasets.{name}.url ({url}): set "
            f"datasets.{name}.filename in {_config_file()}"
        )
    try:
        target = fetch_url(
            url, dest_dir / "download" / filename, spec.get("sha256"), progress=progress
        )
    except CxrbsError as exc:
        raise CxrbsError(f"data set {name}: {exc}") from exc
    if archive_kind(target) is None:
        return target.parent
    return _extract_once(target, dest_dir / "files")


def _extract_once(archive: Path, out: Path) -> Path:
    """Unpack ``archive`` into ``out`` unless an earlier run already unpacked this same file.

    A stamp beside ``out`` records which archive (path, size, mtime) produced it; a folder
    without a stamp was not made here and is never deleted.
    """
    stamp_path = out.with_name(f".{out.name}.source.json")
    st = archive.stat()
    stamp = {"archive": str(archive.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    previous = _read_stamp(stamp_path)
    if out.is_dir() and previous == {**stamp, "done": True}:
        return _data_root(out)
    if out.exists():
        if previous is None:
            raise CxrbsError(
                f"{out} exists but was not unpacked by cxrbs from {archive}: delete it and run "
                f"again"
            )
        shutil.rmtree(out)
    write_json(stamp_path, {**stamp, "done": False})
    safe_extract(archive, out)
    write_json(stamp_path, {**stamp, "done": True})
    return _data_root(out)


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _data_root(out: Path) -> Path:
    """The single top-level folder of an archive, else ``out``; macOS zip litter ignored."""
    litter = ("__MACOSX", ".DS_Store")
    entries = [p for p in out.iterdir() if p.name not in litter and not p.name.startswith("._")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return out
