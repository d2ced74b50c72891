#!/usr/bin/env python
"""`cxrbs suppress` speed as a user sees it (issue 24): whole process, external timer, median.

    .venv/bin/python benchmarks/suppress_speed.py [--data ../shared/data] [--runs 3]

Prints (with the load average before each block):
  * a folder of the BSE-JSRT 512² PNGs: images/s for --precision fp32/auto x --workers 1/default;
  * the same folder with one core kept busy by another process: the slowdown, for the default
    and for the old single-lane fp32 path;
  * one DICOM (RG1_UNCR.dcm, 1955x1841) end to end, DICOM out, seconds; `import cxrbs.bs.suppress`;
  * the 256² forward of the default bundled model, ms, fp32 and bf16 + channels-last, 1 and 2
    torch threads; ONNX Runtime fp32 beside it when onnxruntime and onnx are importable;
  * bf16 vs fp32 outputs on the real images: max and mean absolute difference in 8-bit grey levels.
Nothing here is a pass/fail test; the numbers go into the README with this command.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CXRBS = [sys.executable, "-m", "cxrbs.cli"]


def _timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _spin(stop: mp.Event) -> None:  # type: ignore[valid-type]
    x = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        x += 1


def _forward_ms(model: torch.nn.Module, threads: int, amp: str = "none", cl: bool = False,
                runs: int = 15) -> float:
    from cxrbs.core.device import autocast_context

    torch.set_num_threads(threads)
    model = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    x = torch.rand(1, 1, 256, 256)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_context("cpu", amp):
        for _ in range(3):
            model(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            ts.append(1000 * (time.perf_counter() - t0))
    return statistics.median(ts)


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


class _Busy:
    """One core kept busy by another process (the shared-machine case)."""

    def __enter__(self) -> None:
        self.stop = mp.Event()
        self.proc = mp.Process(target=_spin, args=(self.stop,))
        self.proc.start()
        time.sleep(1.0)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.proc.join()


def _folder_rate(folder: Path, out: Path, n: int, runs: int, *opts: str) -> float:
    s = _timed([*CXRBS, "suppress", str(folder), "-o", str(out), *opts], runs)
    shutil.rmtree(out, ignore_errors=True)
    return n / s


def _ort_ms(model: torch.nn.Module, threads: int) -> str:
    """ONNX Runtime fp32 on the same model, or why it was not measured."""
    try:
        import onnxruntime as ort  # noqa: F401  (optional, not a dependency)
        import onnx  # noqa: F401
    except ImportError:
        return "not measured (pip install onnxruntime onnx)"
    path = Path(tempfile.mkdtemp(prefix="ort_")) / "m.onnx"
    x = torch.rand(1, 1, 256, 256)
    torch.onnx.export(model, x, str(path), input_names=["x"], output_names=["y"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    for _ in range(3):
        sess.run(None, {"x": xn})
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        sess.run(None, {"x": xn})
        ts.append(1000 * (time.perf_counter() - t0))
    return f"{statistics.median(ts):.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = args.data / "bse-jsrt" / "source"
    n = len(list(folder.glob("*.png")))
    out = Path(tempfile.mkdtemp(prefix="suppress_speed_"))
    print(f"machine: {os.cpu_count()} CPUs, usable {len(os.sched_getaffinity(0))}; {_load()}")
    rates = {}
    for precision in ("fp32", "auto"):
        for workers in ("1", "default"):
            opts = ["--precision", precision] + ([] if workers == "default" else ["--workers", workers])
            rates[precision, workers] = _folder_rate(folder, out / "f", n, args.runs, *opts)
            print(f"folder of {n} PNGs (512²), --precision {precision}, --workers {workers}: "
                  f"{rates[precision, workers]:.1f} images/s   {_load()}")
    with _Busy():
        busy_new = _folder_rate(folder, out / "f", n, args.runs, "--precision", "auto")
        busy_old = _folder_rate(folder, out / "f", n, args.runs, "--precision", "fp32",
                                "--workers", "1")
    print(f"one core busy: default {busy_new:.1f} images/s "
          f"({rates['auto', 'default'] / busy_new:.2f}x slower than idle); fp32 single lane "
          f"{busy_old:.1f} images/s ({rates['fp32', '1'] / busy_old:.2f}x)")
    dcm = args.data / "dicom" / "RG1_UNCR.dcm"
    for precision in ("fp32", "auto"):
        s = _timed([*CXRBS, "suppress", str(dcm), "-o", str(out / "dcm"), "--format", "dicom",
                    "--precision", precision], args.runs)
        shutil.rmtree(out / "dcm", ignore_errors=True)
        print(f"RG1_UNCR.dcm (1955x1841) end to end, DICOM out, --precision {precision}: {s:.2f} s"
              f"   {_load()}")
    s = _timed([sys.executable, "-c", "import cxrbs.bs.suppress"], args.runs)
    print(f"import cxrbs.bs.suppress: {s:.2f} s (python start included)")

    from cxrbs.bs.bundled import default_bundled, verified_weights
    from cxrbs.bs.predict import load_bs_model
    from cxrbs.bs.suppress import suppress_image
    from cxrbs.data.io import read_image

    bundled = default_bundled()
    assert bundled is not None, "no bundled model"
    model, meta = load_bs_model(verified_weights(bundled))
    print(f"256² forward, ONNX Runtime fp32, 1 thread: {_ort_ms(model, 1)}   {_load()}")
    modes = {"fp32": ("none", False), "bf16 + channels-last": ("bf16", True)}
    for label, (amp, cl) in modes.items():
        idle = {t: _forward_ms(model, t, amp, cl) for t in (1, 2)}
        with _Busy():
            loaded = {t: _forward_ms(model, t, amp, cl) for t in (1, 2)}
        for t in (1, 2):
            print(f"256² forward {label}, {t} thread(s): idle {idle[t]:.0f} ms, one core busy "
                  f"{loaded[t]:.0f} ms ({loaded[t] / idle[t]:.1f}x)")
    model = model.to(memory_format=torch.contiguous_format)

    torch.set_num_threads(1)
    diffs = []
    files = sorted(folder.glob("*.png"))[:16] + [dcm]
    for f in files:
        img = read_image(f)
        a = suppress_image(model, img, size=256)
        b = suppress_image(model, img, size=256, amp="bf16", channels_last=True)
        diffs.append(np.abs(a.astype(np.float64) - b) * 255)
    print(f"bf16 vs fp32 on {len(files)} real images: max {max(d.max() for d in diffs):.2f}, "
          f"mean {np.mean([d.mean() for d in diffs]):.3f} grey levels (8-bit)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
