"""``cxrbs info`` and ``phantoms``: look at files, make synthetic ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cxrbs.commands.common import EXIT_USER_ERROR, report
from cxrbs.commands import cli_checks as checks
from cxrbs.core.errors import CxrbsError


def info(args: argparse.Namespace) -> int:
    """One text block (or one JSON object) per file; unreadable files reported, exit 2."""
    from pydicom.uid import UID

    from cxrbs.data.io import image_info

    infos, failed = [], 0
    for path in args.files:
        try:
            item = image_info(path)
        except CxrbsError as exc:
            report(exc)
            failed += 1
            continue
        if item.get("transfer_syntax"):
            item["transfer_syntax_name"] = UID(item["transfer_syntax"]).name
        infos.append(item)
        if not args.json:
            print(info_block(item))
    if args.json:
        print(json.dumps(infos, indent=2))
    return EXIT_USER_ERROR if failed else 0


def info_block(info: dict[str, Any]) -> str:
    syntax = info.get("transfer_syntax")
    lines = [
        info["file"],
        f"  format:               {info['format']}",
        f"  modality:             {info['modality']}",
        f"  size:                 {info['width']} x {info['height']} pixels (width x height"
        + ("; DICOM Columns x Rows)" if info["format"] == "DICOM" else ")"),
        f"  bit depth:            {info['bit_depth']}",
        f"  photometric:          {info['photometric']}",
        f"  stored value range:   {info['min']} .. {info['max']}",
        f"  transfer syntax:      "
        + (f"{info.get('transfer_syntax_name', '')} ({syntax})" if syntax else "n/a (not DICOM)"),
    ]
    return "\n".join(lines) + "\n"


def models(args: argparse.Namespace) -> int:
    """`cxrbs models`: every bundled model with its card's figures (the checksum is not read)."""
    from cxrbs.bs.bundled import describe, list_bundled

    bundled = list_bundled()
    if args.json:
        print(json.dumps([{"name": m.name, "default": m.default, "weights": str(m.weights),
                           "sha256": m.sha256, "card": str(m.card), "figures": m.figures,
                           "description": m.description, "metadata": m.metadata}
                          for m in bundled], indent=2))
        return 0
    if not bundled:
        print("no bundled models in this installation")
        return 0
    print("\n\n".join(describe(m) for m in bundled))
    return 0


def phantoms(args: argparse.Namespace) -> int:
    """Synthetic radiographs in a public data set's folder layout."""
    from cxrbs.data.phantom_layouts import write_layout

    checks.check_phantoms(args)
    outdir = write_layout(args.kind, Path(args.outdir), args.n, size=args.size, seed=args.seed)
    n_files = sum(1 for p in outdir.rglob("*.png") if not p.name.startswith("."))
    print(f"wrote {args.n} synthetic {args.kind} case(s) ({n_files} PNG files, {args.size}x"
          f"{args.size}) to {outdir}")
    return 0


def check_config_files(args: argparse.Namespace) -> int:
    """`cxrbs check-config FILE...`: one `FILE:LINE:COL: problem` line per problem (stderr)."""
    from cxrbs.config_checks import config_file_problems

    failed = 0
    for path in args.files:
        try:
            problems = config_file_problems(path, deep=not args.schema_only)
        except CxrbsError as exc:
            problems = [" ".join(str(exc).split())]
        for line in problems:
            print(line, file=sys.stderr, flush=True)
        if problems:
            failed += 1
        elif not args.quiet:
            print(f"{path}: valid (YAML syntax, schema"
                  + ("" if args.schema_only else ", model arguments and patterns") + ")")
    return EXIT_USER_ERROR if failed else 0
