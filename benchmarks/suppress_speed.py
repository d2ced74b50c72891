#!/usr/bin/env python
"""`cxrbs suppress` speed as a user sees it (issue 24): whole process, external timer, median.

    .venv/bin/python benchmarks/suppress_speed.py [--data ../shared/data] [--runs 3]

Prints (with the load average before each block):
  * a folder of the BSE-JSRT 512² PNGs: images/s with --io-workers 0 and 1;
  * one DICOM (RG1_UNCR.dcm, 1955x1841) end to end, seconds;
  * the 256² forward of the default bundled model, ms, with 1 and 2 torch threads, idle and with
    one core kept busy by another process (the oversubscription case);
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


def _forward_ms(model: torch.nn.Module, threads: int, runs: int = 15) -> float:
    torch.set_num_threads(threads)
    x = torch.rand(1, 1, 256, 256)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            ts.append(1000 * (time.perf_counter() - t0))
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = args.data / "bse-jsrt" / "source"
    n = len(list(folder.glob("*.png")))
    out = Path(tempfile.mkdtemp(prefix="suppress_speed_"))
    print(f"machine: {os.cpu_count()} CPUs, usable {len(os.sched_getaffinity(0))}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for workers in (0, 1):
        s = _timed([*CXRBS, "suppress", str(folder), "-o", str(out / f"w{workers}"),
                    "--io-workers", str(workers)], args.runs)
        print(f"folder of {n} PNGs (512²), --io-workers {workers}: {s:.2f} s, {n / s:.1f} images/s")
        shutil.rmtree(out / f"w{workers}", ignore_errors=True)
    dcm = args.data / "dicom" / "RG1_UNCR.dcm"
    s = _timed([*CXRBS, "suppress", str(dcm), "-o", str(out / "dcm")], args.runs)
    print(f"RG1_UNCR.dcm end to end (PNG out): {s:.2f} s   load average {os.getloadavg()[0]:.2f}")

    from cxrbs.bs.bundled import default_bundled, verified_weights
    from cxrbs.bs.predict import load_bs_model
    from cxrbs.bs.suppress import suppress_image
    from cxrbs.data.io import read_image

    bundled = default_bundled()
    assert bundled is not None, "no bundled model"
    model, meta = load_bs_model(verified_weights(bundled))
    idle = {t: _forward_ms(model, t) for t in (1, 2)}
    stop = mp.Event()
    busy = mp.Process(target=_spin, args=(stop,))
    busy.start()
    try:
        time.sleep(1.0)
        loaded = {t: _forward_ms(model, t) for t in (1, 2)}
    finally:
        stop.set()
        busy.join()
    for t in (1, 2):
        print(f"256² forward, {t} thread(s): idle {idle[t]:.0f} ms, one core busy "
              f"{loaded[t]:.0f} ms ({loaded[t] / idle[t]:.1f}x)")

    torch.set_num_threads(1)
    diffs = []
    files = sorted(folder.glob("*.png"))[:16] + [dcm]
    for f in files:
        img = read_image(f)
        a = suppress_image(model, img, size=256)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = suppress_image(model, img, size=256)
        diffs.append(np.abs(a.astype(np.float64) - b) * 255)
    print(f"bf16 vs fp32 on {len(files)} real images: max {max(d.max() for d in diffs):.2f}, "
          f"mean {np.mean([d.mean() for d in diffs]):.3f} grey levels (8-bit)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
