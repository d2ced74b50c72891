"""The one image-file walker and the one list of image suffixes.

Reading a folder of images is needed by the readers (``io.list_images``), by ``cxrbs suppress``
and ``cxrbs predict`` (inputs given as folders) and by the manifest builders. They used to walk
folders three ways with four suffix lists, so a file could be an image to one command and not to
another; here is the single answer. The walker never descends into an output folder given as
``exclude``, so ``-o`` inside the input folder, run twice, does not read its own outputs back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
#: Every suffix an image file may have; DICOM files may also have none (found by their marker).
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
#: Files often found beside images that are certainly not DICOM: not worth opening to sniff.
NOT_IMAGE_SUFFIXES = frozenset({".txt", ".csv", ".json", ".md", ".xml", ".yaml", ".yml", ".zip",
                                ".gz", ".pt", ".npy", ".html", ".pdf"})
#: Files that archives and operating systems leave beside images (compared lower-case), and the
#: DICOM media directory, which indexes images but holds none.
IGNORED_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini", "dicomdir"})

PathLike = str | os.PathLike[str]


def has_dicom_marker(path: PathLike) -> bool:
    """Whether bytes 128-131 read 'DICM' (the DICOM Part 10 preamble); unreadable files: no.

    Only a regular file is opened: opening a named pipe would wait for a writer forever.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_image_name(path: PathLike) -> bool:
    """By suffix alone: what manifest builders accept, where file names carry the labels."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_image_file(path: PathLike, *, sniff_dicom: bool = True) -> bool:
    """By suffix, or (``sniff_dicom``) by the 'DICM' marker: DICOM files are often named by UID,
    without a suffix. Files with a suffix that is certainly not an image are not opened."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    return sniff_dicom and suffix not in NOT_IMAGE_SUFFIXES and has_dicom_marker(path)


def _skipped(name: str) -> bool:
    """Hidden files are OS litter or half-written temporaries (ours included)."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def walk_files(root: PathLike, *, recursive: bool = True, exclude_dirs: Iterable[str] = (),
               exclude: Iterable[PathLike] = ()) -> Iterator[Path]:
    """Regular files under ``root``, folder by folder (top-down, names sorted).

    Hidden files and folders, OS litter and folders named in ``exclude_dirs`` (case-insensitive)
    are skipped; folders in ``exclude`` (e.g. the command's output folder) are never entered.
    Symbolic links to folders are not followed, so a link loop cannot hang a walk.
    """
    excluded_names = {d.lower() for d in exclude_dirs}
    excluded_paths = {Path(p).resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if not recursive or d.startswith(".") or d.lower() in excluded_names:
                continue
            if excluded_paths and (folder / d).resolve() in excluded_paths:
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = folder / name
            if not _skipped(name) and path.is_file():  # no FIFO, socket or broken link
                yield path


def walk_images(root: PathLike, *, recursive: bool = True, exclude_dirs: Iterable[str] = (),
                exclude: Iterable[PathLike] = (), sniff_dicom: bool = True) -> list[Path]:
    """Image files under ``root`` in ``walk_files`` order (see there for what is skipped)."""
    return [p for p in walk_files(root, recursive=recursive, exclude_dirs=exclude_dirs,
                                  exclude=exclude)
            if is_image_file(p, sniff_dicom=sniff_dicom)]
