"""Images per second of a Frozen-Net AlexNet training epoch against a plain PyTorch loop on
the same model, data and batch, measured side by side in one process.

Epochs alternate between the two (plain, frozen, then frozen, plain, …: see ``_report.py``)
after one warm-up epoch of each; the throughput change is taken per pair of epochs, then
reported as median [min–max].

Data: real Fashion-MNIST when the Debian package is installed (else random images of the
same shape), held on the device as uint8 and prepared per batch on the device (normalise,
gray to RGB, resize), as the engine does. ``--channels-last`` and ``--amp`` (bf16 autocast on
CPU, fp16 with a grad scaler on CUDA) try the fast paths.

Checked (PASS/MISS): target, Frozen-Net's throughput is at most 5% below the plain loop's on
CPU, 3% on CUDA; ``--strict`` exits 1 when it misses. ``--quick`` (250 images, two pairs)
checks that the script runs; its verdict is not counted.

    python benchmarks/bench_images.py [--repeats 3] [--images 2000] [--batch 250] [--size 64] [--device cpu]
                                      [--channels-last] [--amp] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.nn import functional as F

import polarnet as pn
from polarnet.data.images import DataError, load_images
from polarnet.experiments.datasets import ImagePrep
from polarnet.models import get_model

from _report import Report, Spread, add_arguments, alternate, per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 3, "--epochs")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batch, args.repeats = 250, 125, min(args.repeats, 2)
    device = torch.device(args.device)
    report = Report("bench_images", args.strict, counted=not args.quick)

    try:
        x, y = load_images("fashion_mnist", True)
        source = "Fashion-MNIST"
    except DataError:
        x, y = torch.randint(0, 256, (args.images, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (args.images,))
        source = "random images"
    x, y = x[: args.images].to(device), y[: args.images].to(device)
    prep = ImagePrep((0.2860,), (0.3530,), channels=3, size=args.size)
    memory = torch.channels_last if args.channels_last else torch.contiguous_format

    def make():
        model = pn.init_magnitudes(get_model("alexnet"), seed=0).to(device, memory_format=memory)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    plain_model, plain_opt = make()
    frozen_model, frozen_opt = make()
    template = pn.PolarityTemplate.random(frozen_model, seed=0)
    pn.freeze(frozen_model, template, frozen_opt)
    amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")

    def epoch(model, optimizer) -> float:
        order = torch.randperm(len(x), device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in order.split(args.batch):
            inputs = prep(x[batch]).to(memory_format=memory)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                loss = F.cross_entropy(model(inputs), y[batch])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(x) / (time.perf_counter() - start)

    rates = alternate({"plain": lambda: epoch(plain_model, plain_opt),
                       "frozen": lambda: epoch(frozen_model, frozen_opt)}, args.repeats)
    assert pn.violations(frozen_model, template) == 0
    change = Spread.of(per_round(lambda f, p: f / p - 1, rates["frozen"], rates["plain"]))
    extras = ", ".join(k for k, on in (("channels-last", args.channels_last), ("amp", args.amp)) if on) or "fp32"
    print(f"AlexNet on {len(x)} {source} images at 3x{args.size}x{args.size}, batch {args.batch}, Adam, "
          f"{device.type}, {extras}; {args.repeats} alternated pair(s) of epochs, median [min–max]")
    print(f"plain PyTorch loop:  {Spread.of(rates['plain']).format('.1f', ' images/s')}")
    print(f"Frozen-Net (freeze): {Spread.of(rates['frozen']).format('.1f', ' images/s')}")
    slower = 0.03 if device.type == "cuda" else 0.05
    report.target(f"Frozen-Net throughput vs the plain loop (at most {slower:.0%} slower on {device.type})",
                  change, ">=", -slower, spec="+.1%")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
