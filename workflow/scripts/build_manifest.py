import json
from pathlib import Path

from cxrbs.core.atomic import write_csv
from cxrbs.data.stacks import build_stack_with_meta
from cxrbs.data.manifests import build_manifest
from cxrbs.core.snakemake_glue import run

LAYOUT_OPTIONS = ("classes", "patient_regex", "source_dir", "target_dir")


def main(sm):
    source = json.loads(Path(sm.input[0]).read_text())
    spec = dict(sm.params.spec)
    options = {k: spec[k] for k in LAYOUT_OPTIONS if k in spec}
    manifest = build_manifest(Path(source["root"]), spec["layout"], **options)
    pre = dict(sm.params.preprocess)
    _, manifest = build_stack_with_meta(
        manifest, Path(sm.output.images), size=pre["size"], low_pct=pre["low_percentile"],
        high_pct=pre["high_percentile"], pair_stretch=pre["pair_stretch"],
        max_pixels=pre["max_pixels"])
    write_csv(sm.output.manifest, manifest)  # with each original's size, spacing, polarity


run(snakemake, main)  # noqa: F821
