"""Bone-suppression speed on the current device: plain fp32 eager beside the optimised path.

Prints, per architecture: parameters, training images/s (batch 8, combined MAE + MS-SSIM loss),
inference ms/image at 256 and 1024, peak memory, and the PSNR change the optimised path causes.
Run: .venv/bin/python benchmarks/bs_speed.py [--archs resnet_bs] [--sizes 256 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cxrbs.core.device import autocast_context, select_device
from cxrbs.bs.losses import CombinedLoss
from cxrbs.bs.metrics import psnr
from cxrbs.models import create_model, list_models
from cxrbs.data.phantoms import make_phantom

MODES = {"fp32 eager": ("none", False, False), "bf16 + channels_last": ("bf16", True, False),
         "bf16 + channels_last + compile": ("bf16", True, True)}


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(arch: str, device: torch.device, channels_last: bool, compile_: bool) -> torch.nn.Module:
    model = create_model(arch, seed=0, output="residual" if arch == "resnet_bs" else "direct").to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_:
        model = torch.compile(model)
    return model


def batch(size: int, n: int, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    phantoms = [make_phantom(rng, size) for _ in range(n)]
    x = torch.from_numpy(np.stack([p.radiograph for p in phantoms])[:, None]).to(device)
    y = torch.from_numpy(np.stack([p.soft_tissue for p in phantoms])[:, None]).to(device)
    if channels_last:
        x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
    return x, y


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(model, x, y, device, amp, steps: int) -> float:
    loss_fn = CombinedLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i in range(steps + 1):  # first step warms up (and compiles)
        if i == 1:
            sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, amp):
            pred = model(x)
        loss = loss_fn(pred.float(), y)
        loss.backward()
        opt.step()
    sync(device)
    return steps * x.shape[0] / (time.perf_counter() - start)


@torch.inference_mode()
def infer(model, x, device, amp, repeats: int) -> tuple[float, np.ndarray]:
    with autocast_context(device, amp):
        out = model(x[:1]).float()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        with autocast_context(device, amp):
            out = model(x[:1]).float()
    sync(device)
    return (time.perf_counter() - start) / repeats * 1000, out.cpu().numpy()[0, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list_models("bs"))
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--modes", nargs="+", default=["fp32 eager", "bf16 + channels_last"],
                        choices=list(MODES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device()
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("arch | params | mode | train img/s (b8, 256) | " + " | ".join(f"infer ms @{s}" for s in args.sizes)
          + " | PSNR vs target @256 | peak MB")
    for arch in args.archs:
        base_ms: dict[int, float] = {}
        base_train = None
        for mode in args.modes:
            amp, cl, comp = MODES[mode]
            model = prepare(arch, device, cl, comp)
            params = sum(p.numel() for p in model.parameters())
            x, y = batch(256, 8, device, cl)
            ips = train_speed(model, x, y, device, amp, args.train_steps)
            model.eval()
            times, quality = [], None
            for size in args.sizes:
                xs, ys = batch(size, 1, device, cl)
                ms, out = infer(model, xs, device, amp, args.repeats)
                times.append(ms)
                if size == 256:
                    quality = psnr(np.clip(out, 0, 1), ys.float().cpu().numpy()[0, 0])
            if base_train is None:
                base_train, base_ms = ips, dict(zip(args.sizes, times))
            ratio = " | ".join(f"{t:.0f} ({base_ms[s] / t:.2f}x)" for s, t in zip(args.sizes, times))
            print(f"{arch} | {params:,} | {mode} | {ips:.2f} ({ips / base_train:.2f}x) | {ratio} | "
                  f"{quality:.3f} dB | {peak_mb(device):.0f}", flush=True)


if __name__ == "__main__":
    main()
