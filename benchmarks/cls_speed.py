"""Classifier speed on the current device: fp32 eager beside bf16 autocast + channels_last.

Prints training images/s (SGD step, batch 16) and inference ms/image, each mode as a ratio to
plain fp32. Run: .venv/bin/python benchmarks/cls_speed.py [--models vgg16 small_cnn] [--size 256]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cxrbs.core.device import autocast_context, select_device
from cxrbs.models import create_model

MODES = {"fp32 eager": ("none", False), "bf16 + channels_last": ("bf16", True)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, size: int, batch: int, steps: int, repeats: int, amp: str, cl: bool,
            device: torch.device) -> tuple[float, float, int]:
    model = create_model(name, seed=0).to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, amp):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
    sync(device)
    train_ips = steps * batch / (time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        with autocast_context(device, amp):
            model(x[:1])
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            with autocast_context(device, amp):
                model(x[:1])
        sync(device)
    infer_ms = (time.perf_counter() - start) / repeats * 1000
    return train_ips, infer_ms, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "vgg16_bn", "small_cnn", "resnet18"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device()
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, size {args.size}, batch {args.batch}")
    print("model | params | mode | train img/s | infer ms/img")
    for name in args.models:
        base = None
        for mode, (amp, cl) in MODES.items():
            ips, ms, params = measure(name, args.size, args.batch, args.steps, args.repeats, amp, cl, device)
            base = base or (ips, ms)
            print(f"{name} | {params:,} | {mode} | {ips:.2f} ({ips / base[0]:.2f}x) | "
                  f"{ms:.1f} ({base[1] / ms:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
