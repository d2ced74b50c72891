"""Device, threads and mixed precision in one place, so training and inference choose them alike."""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrbs.core.errors import CxrbsError

AMP_MODES = ("none", "bf16", "fp16")


def select_device(prefer: str = "auto") -> torch.device:
    """``auto`` takes CUDA when torch sees a GPU, else the CPU; an explicit name must be usable."""
    key = str(prefer).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(key)
    except (RuntimeError, ValueError):
        raise CxrbsError(
            f"device: unknown device {prefer!r}: use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CxrbsError(
            f"device: {prefer!r} was asked for but this torch sees no CUDA GPU: "
            "set device: auto or cpu (or install a CUDA build of torch)"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CxrbsError(
            f"device: {prefer!r} does not exist, this machine has "
            f"{torch.cuda.device_count()} GPU(s)"
        )
    if dev.type not in ("cpu", "cuda"):
        raise CxrbsError(f"device: {prefer!r} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 ``cpu.max`` or v1 ``cfs_quota/period``), or None."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return float(text[0]) / float(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: its affinity mask (taskset, SLURM's cpuset), bounded by
    the cgroup CPU quota (containers), at least 1. torch's default is the host's core count,
    which oversubscribes a shared machine: with one of two cores busy, a 2-thread forward pass
    ran 10x slower than a 1-thread one (issue 24)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        n = min(n, max(1, math.floor(limit)))
    return max(1, n)


def configure_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads; ``None`` uses the CPUs this process may use
    (:func:`usable_cpus`) unless ``OMP_NUM_THREADS`` says otherwise."""
    if threads is None:
        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(usable_cpus())
        return
    try:
        n = int(threads)
    except (TypeError, ValueError):
        raise CxrbsError(f"threads: expected a positive integer or null, got {threads!r}") from None
    if n < 1:
        raise CxrbsError(f"threads: expected a positive integer or null, got {threads!r}")
    torch.set_num_threads(n)


def autocast_context(
    device: torch.device | str, amp: str
) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for forward passes.

    bf16 works on CPU and CUDA (measured 2.4x faster training on this project's CPUs at equal
    loss); fp16 needs a GPU and a GradScaler, so it is refused on the CPU.
    """
    dev = torch.device(device)
    mode = str(amp).strip().lower()
    if mode == "none":
        return contextlib.nullcontext()
    if mode == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    if mode == "fp16":
        if dev.type != "cuda":
            raise CxrbsError(f"amp: fp16 needs a CUDA device, got {dev}: use bf16 or none")
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    raise CxrbsError(f"amp: unknown mode {amp!r}: use one of {', '.join(AMP_MODES)}")


#: Inference precision choices: ``auto`` is bf16 where the hardware computes it natively, else
#: fp32; ``fp32`` is bit-for-bit the reference path.
PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware (AVX512-BF16 or AMX on CPUs, Ampere+ GPUs).

    Elsewhere bf16 is emulated and slower than fp32, so ``precision: auto`` stays at fp32 there.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def inference_amp(precision: str, device: torch.device | str) -> str:
    """The autocast mode (``none``/``bf16``) of an inference ``precision`` on ``device``."""
    mode = str(precision).strip().lower()
    if mode == "fp32":
        return "none"
    if mode == "bf16":
        return "bf16"
    if mode == "auto":
        return "bf16" if native_bf16(device) else "none"
    raise CxrbsError(f"precision {precision!r} is unknown: use one of {', '.join(PRECISIONS)}")


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine() or "cpu"


def environment_info(device: torch.device | str) -> dict[str, Any]:
    """Versions and hardware, stored in checkpoints so a result says what produced it.

    Only strings and ints, so checkpoints stay loadable with ``torch.load(weights_only=True)``.
    """
    import cxrbs

    try:
        msssim_version = importlib.metadata.version("pytorch-msssim")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a hard dependency
        msssim_version = "missing"
    dev = torch.device(device)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "pytorch_msssim": msssim_version,
        "cxrbs": str(cxrbs.__version__),
        "cuda": str(torch.version.cuda or "none"),
        "device": str(dev),
        "device_name": _device_name(dev),
        "threads": int(torch.get_num_threads()),
    }
