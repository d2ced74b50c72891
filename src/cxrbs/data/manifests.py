"""Manifests: one table per data set, built from the folder layouts the public sources really ship.

Every later split groups by ``patient_id``, so each builder's first job is to get that right
(JSRT: one patient per radiograph; Shenzhen/Montgomery: the 4-digit case number; ChestX-ray8:
the 8-digit prefix; Kermany: ``person123``; RSNA: ``patientId``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbs.core.errors import CxrbsError
from cxrbs.data.files import IGNORED_NAMES, IMAGE_SUFFIXES, is_image_name, walk_files

__all__ = ["COLUMNS", "DEFAULT_EXCLUDE_DIRS", "IGNORED_NAMES", "IMAGE_SUFFIXES", "build_manifest"]

#: Sub-folders of the NLM TB zips (lung masks, Mac resource forks) that hold non-radiographs.
DEFAULT_EXCLUDE_DIRS = ("ManualMask", "leftMask", "rightMask", "__MACOSX", "mask", "masks")
COLUMNS = ["image_path", "target_path", "patient_id", "label", "pair_id"]

TB_PATTERNS = {
    "shenzhen": re.compile(r"^(CHNCXR_\d{4})_([01])$", re.IGNORECASE),
    "montgomery": re.compile(r"^(MCUCXR_\d{4})_([01])$", re.IGNORECASE),
}


def _display(path: Path | str) -> str:
    """File names may not be UTF-8; never let formatting an error raise another one.

    An undecodable byte shows as ``\\xff`` (the byte on disk, as ``cxrbs.data.io`` shows it), not as
    the ``\\udcff`` of Python's surrogate escape.
    """
    text = os.fsdecode(path)
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that no file name produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _names(names: list[str]) -> list[str]:
    """The first three names, printable, for 'e.g.' lists in messages."""
    return [_display(n) for n in names[:3]]


def _walk_images(root: Path, exclude_dirs: Iterable[str]) -> list[Path]:
    """Image files by suffix (names carry the labels here, so no DICOM sniffing), walk order."""
    return [p for p in walk_files(root, exclude_dirs=exclude_dirs) if is_image_name(p)]


def _require_dir(root: Path, what: str) -> Path:
    if not root.is_dir():
        raise CxrbsError(f"{what}: folder {_display(root)} does not exist; check the dataset's path")
    return root


def paired_manifest(root: Path, *, source_dir: str = "source", target_dir: str = "target",
                    **_: Any) -> pd.DataFrame:
    """Pairs matched by file stem in ``source/`` and ``target/`` (BSE-JSRT, dual-energy sets)."""
    root = Path(root)
    src_root = _find_subdir(root, source_dir)
    tgt_root = _find_subdir(root, target_dir)
    sources = {p.stem: p for p in _walk_images(src_root, DEFAULT_EXCLUDE_DIRS)}
    targets = {p.stem: p for p in _walk_images(tgt_root, DEFAULT_EXCLUDE_DIRS)}
    only_src = sorted(set(sources) - set(targets))
    only_tgt = sorted(set(targets) - set(sources))
    if only_src or only_tgt:
        raise CxrbsError(
            f"paired folders {_display(src_root)} and {_display(tgt_root)} do not match: "
            f"{len(only_src)} source image(s) without target (e.g. {_names(only_src)}), "
            f"{len(only_tgt)} target image(s) without source (e.g. {_names(only_tgt)}); "
            "every pair needs the same file name on both sides"
        )
    if not sources:
        raise CxrbsError(f"no images found in {_display(src_root)}")
    rows = [
        {"image_path": str(sources[k]), "target_path": str(targets[k]), "patient_id": k,
         "label": pd.NA, "pair_id": k}
        for k in sorted(sources)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _find_subdir(root: Path, name: str) -> Path:
    """The folder called ``name`` directly under root, or one level deeper (archives add a top folder)."""
    _require_dir(root, "paired data set")
    direct = root / name
    if direct.is_dir():
        return direct
    nested = sorted(p for p in root.glob(f"*/{name}") if p.is_dir())
    if len(nested) == 1:
        return nested[0]
    raise CxrbsError(
        f"paired data set {_display(root)} has no '{name}/' folder; expected "
        f"{_display(root / 'source')} and {_display(root / 'target')} with the same file names "
        "(or set source_dir/target_dir in the config)"
    )


def tb_manifest(root: Path, *, layout: str, exclude_dirs: Iterable[str] = DEFAULT_EXCLUDE_DIRS,
                **_: Any) -> pd.DataFrame:
    """NLM TB sets: ``CHNCXR_0001_0.png`` / ``MCUCXR_0001_1.dcm``; the last digit is the label (1 = TB)."""
    root = _require_dir(Path(root), f"{layout} data set")
    pattern = TB_PATTERNS[layout]
    rows, skipped = [], []
    for path in _walk_images(root, exclude_dirs):
        m = pattern.match(path.stem)
        if not m:
            skipped.append(path.name)
            continue
        rows.append({"image_path": str(path), "target_path": pd.NA, "patient_id": m.group(1).upper(),
                     "label": int(m.group(2)), "pair_id": pd.NA})
    if not rows:
        raise CxrbsError(
            f"no {layout} images named like {pattern.pattern} under {_display(root)}"
            + (f" (found other images, e.g. {_names(skipped)})" if skipped else "")
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def class_folder_manifest(root: Path, *, classes: dict[str, int], patient_regex: str | None = None,
                          exclude_dirs: Iterable[str] = DEFAULT_EXCLUDE_DIRS, **_: Any) -> pd.DataFrame:
    """Images sorted into class folders (ChestX-ray8 subsets, Kermany's NORMAL/PNEUMONIA), at any depth.

    ``patient_regex`` is matched against the file stem; group 1 is the patient id. Without it
    every image is its own patient, which is only right for one-image-per-patient sets.
    """
    root = _require_dir(Path(root), "class-folder data set")
    wanted = {name.lower(): int(label) for name, label in classes.items()}
    regex = re.compile(patient_regex) if patient_regex else None
    rows = []
    for path in walk_files(root, exclude_dirs=exclude_dirs):
        folder = path.parent
        label = wanted.get(folder.name.lower())
        if label is None:
            continue
        if not is_image_name(path):
            raise CxrbsError(
                f"unknown file {_display(path)} in class folder {_display(folder)}: only images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}) belong there; move it out"
            )
        patient = path.stem
        if regex is not None:
            m = regex.search(path.stem)
            if not m:
                raise CxrbsError(
                    f"file {_display(path)} does not match patient_regex {regex.pattern!r}; "
                    "fix the file name or the dataset's patient_regex in the config"
                )
            patient = m.group(1)
        rows.append({"image_path": str(path), "target_path": pd.NA, "patient_id": patient,
                     "label": label, "pair_id": pd.NA})
    if not rows:
        raise CxrbsError(
            f"no images in class folders {sorted(wanted)} under {_display(root)}; "
            "check the dataset's classes mapping in the config"
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def rsna_manifest(root: Path, *, labels_csv: str = "stage_2_train_labels.csv",
                  images_dir: str = "stage_2_train_images", **_: Any) -> pd.DataFrame:
    """RSNA Pneumonia Detection Challenge: DICOMs named by patientId plus a box table (Target 0/1)."""
    root = _require_dir(Path(root), "RSNA data set")
    csv_path = next(iter(sorted(root.rglob(labels_csv))), None)
    img_root = next(iter(sorted(p for p in root.rglob(images_dir) if p.is_dir())), None)
    if csv_path is None or img_root is None:
        raise CxrbsError(f"RSNA data set {_display(root)} needs {labels_csv} and {images_dir}/")
    table = pd.read_csv(csv_path)
    missing = {"patientId", "Target"} - set(table.columns)
    if missing:
        raise CxrbsError(f"{_display(csv_path)} lacks column(s) {sorted(missing)}")
    labels = table.groupby("patientId")["Target"].max()
    rows = []
    for pid, label in labels.items():
        path = img_root / f"{pid}.dcm"
        if not path.is_file():
            raise CxrbsError(f"{_display(csv_path)} lists {pid} but {_display(path)} is missing")
        rows.append({"image_path": str(path), "target_path": pd.NA, "patient_id": str(pid),
                     "label": int(label), "pair_id": pd.NA})
    return pd.DataFrame(rows, columns=COLUMNS)


BUILDERS: dict[str, Callable[..., pd.DataFrame]] = {
    "paired": paired_manifest,
    "shenzhen": lambda root, **kw: tb_manifest(root, layout="shenzhen", **kw),
    "montgomery": lambda root, **kw: tb_manifest(root, layout="montgomery", **kw),
    "class_folders": class_folder_manifest,
    "rsna": rsna_manifest,
}


def build_manifest(root: Path, layout: str, **options: Any) -> pd.DataFrame:
    """Dispatch on the config's ``layout``; rows sorted so the stack index is stable across runs."""
    if layout not in BUILDERS:
        raise CxrbsError(f"unknown layout {layout!r}; choose one of {sorted(BUILDERS)}")
    frame = BUILDERS[layout](Path(root), **options)
    frame = frame.sort_values(["patient_id", "image_path"], kind="stable").reset_index(drop=True)
    frame.insert(0, "index", range(len(frame)))
    return frame
