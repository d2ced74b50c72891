"""`cxrbs suppress` starts light (issue 24): inference imports neither the training code, nor
scipy.stats, nor matplotlib, nor Snakemake, nor pandas or jsonschema (0.3 s of start). Run in a fresh interpreter so other tests' imports do
not hide an import that crept in."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("cxrbs.bs.train", "cxrbs.training", "cxrbs.cls", "scipy.stats", "matplotlib",
         "snakemake", "statsmodels", "sklearn", "pandas", "jsonschema")

PROBE = """
import json, sys
from cxrbs import cli
from cxrbs.bs import suppress
from cxrbs.commands import bs
print(json.dumps(sorted(sys.modules)))
"""


def test_suppress_imports_no_training_code_nor_heavy_libraries() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True)
    loaded = json.loads(out.stdout)
    bad = sorted({h for h in HEAVY for m in loaded if m == h or m.startswith(h + ".")})
    assert not bad, f"`cxrbs suppress` imports {bad}"
