"""Where a data set's files come from: a download, the user's own folder, or synthetic phantoms.

The result is a small JSON record (``resources/<name>/source.json``) naming the folder to read,
so later rules never need to know how the data arrived.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from cxrbs.core.atomic import write_json
from cxrbs.data.download import materialize_source
from cxrbs.data.phantom_layouts import write_layout

log = logging.getLogger(__name__)


def prepare_source(name: str, spec: dict[str, Any], record: Path, *, seed: int,
                   progress: bool = True) -> dict[str, Any]:
    """Make the data set available and write ``record`` (JSON: name, root, origin)."""
    dest_dir = Path(record).parent
    if "synthetic" in spec:
        syn = spec["synthetic"]
        # A changed spec (n, size) must not leave images of the previous one beside the new ones.
        shutil.rmtree(dest_dir / "files", ignore_errors=True)
        root = write_layout(syn["kind"], dest_dir / "files", int(syn["n"]),
                            size=int(syn.get("size", 256)), seed=seed,
                            severity=float(syn.get("severity", 1.0)))
        origin: str | None = f"synthetic phantoms ({syn['kind']}, n={syn['n']}, seed={seed})"
    else:
        root = materialize_source(spec, dest_dir, name=name, progress=progress)
        origin = spec.get("url") or spec.get("path")
    info = {"name": name, "root": str(Path(root).resolve()), "origin": origin,
            "synthetic": "synthetic" in spec, "layout": spec.get("layout")}
    write_json(record, info)
    log.info("data set %s ready at %s (%s)", name, info["root"], origin)
    return info
