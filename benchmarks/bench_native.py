"""Each C kernel family against the torch path, built for ``-march=native`` and for ``x86-64-v3``.

Both builds are loaded in one process (:func:`polarnet.native.build.using`) and the arms
alternate round by round (``_report.orders``), so all three face the same machine load:

- ``torch``: what runs with ``POLARNET_NATIVE=0`` (the sparse enforcer; batched products;
  ``conv2d`` → ``max_pool2d`` → ``relu`` and autograd);
- ``native``: the kernels built with ``-march=native`` (on an AVX-512 machine, 16-wide vectors);
- ``x86-64-v3``: the same C built for any AVX2 machine: what such a machine gets.

Cases, at the engines' shapes: Freeze-SGD enforcement of torchvision AlexNet (57 M weights, about
2% of them violating, as after an Adam step; bench_freeze's case), the XOR ensemble's MLP logits
(150 members, 64 hidden units, 1000 samples), and a LeNet ensemble's kernels (12 members, a
batch of 64 Fashion-MNIST-sized images): the first convolution's fused pool+ReLU forward, its
weight gradient (forward with codes and backward), the grouped second convolution, and the pool
before the linear layer. Each kernel is kept only where it beats the torch path by ≥ 1.5×
(issue 23): a PASS/MISS per kernel and build. Under two minutes on 2 cores.

    python benchmarks/bench_native.py [--repeats 7] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import operator
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import polarnet as pn
from _report import Report, Spread, add_arguments, alternate, per_round, timed
from polarnet import native
from polarnet.native import build

TARGETS = ("native", "x86-64-v3")


def cpu_line() -> str:
    """The CPU's model and its vector flags (what ``-march=native`` builds for)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    vector = [f for f in flags if f.startswith(("avx", "fma", "sse4"))]
    return f"{model}; {' '.join(vector)}"


def enforcement_case(quick: bool) -> tuple[Callable[[], object], Callable[[], object], Callable[[], None]]:
    """AlexNet's weights, about 2% violating; torch (sparse) and kernel (native) enforcers, and a restore."""
    model = pn.init_magnitudes(torchvision.models.alexnet(num_classes=10), seed=0)
    if quick:
        model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    template = pn.PolarityTemplate.random(model, seed=0)
    pn.align(model, template)
    weights = [model.get_parameter(n).detach() for n in template]
    g = torch.Generator().manual_seed(1)
    for w in weights:
        flip = torch.rand(w.shape, generator=g) < 0.02
        w[flip] = -w[flip]
    copies = [w.clone() for w in weights]
    sparse = pn.Enforcer(model, template, "posRand", 1e-3, seed=0, path="sparse")
    kernel = pn.Enforcer(model, template, "posRand", 1e-3, seed=0, path="native")

    def restore() -> None:
        for w, c in zip(weights, copies):
            w.copy_(c)

    return sparse.enforce, kernel.enforce, restore


def mlp_case() -> tuple[Callable[[], object], Callable[[], object]]:
    g = torch.Generator().manual_seed(2)
    m, n, d, h = 150, 1000, 5, 64
    x, w1, b1 = torch.randn(n, d, generator=g), torch.randn(m, h, d, generator=g), torch.randn(m, h, generator=g)
    w2, b2 = torch.randn(m, 1, h, generator=g), torch.randn(m, 1, generator=g)

    def torch_path() -> torch.Tensor:
        hidden = torch.baddbmm(b1.unsqueeze(2), w1, x.t().expand(m, d, n)).relu_()
        return torch.baddbmm(b2.unsqueeze(2), w2, hidden).squeeze(1)

    return torch_path, lambda: native.mlp_logits(x, w1, b1, w2, b2)


def lenet_cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    g = torch.Generator().manual_seed(3)
    m, n = 12, 64
    x = torch.randn(n, 1, 28, 28, generator=g)
    w1, b1 = torch.randn(m * 6, 1, 5, 5, generator=g), torch.randn(m * 6, generator=g)
    a1 = torch.randn(n, m * 6, 14, 14, generator=g).contiguous(memory_format=torch.channels_last)
    w2, b2 = torch.randn(m * 16, 6, 5, 5, generator=g), torch.randn(m * 16, generator=g)
    a2 = torch.randn(n, m * 16, 10, 10, generator=g).contiguous(memory_format=torch.channels_last)
    ones = torch.ones(n, m * 6, 14, 14)

    def conv1_torch_grad() -> torch.Tensor:
        w = w1.detach().requires_grad_()
        F.max_pool2d(F.conv2d(x, w, b1, padding=2), 2).relu().backward(ones)
        return w.grad

    def conv1_native_grad() -> tuple[torch.Tensor, torch.Tensor]:
        _, codes = native.conv_pool_with_codes(x, w1, b1, (2, 2), True)
        return native.pool_weight_grad(x, ones, codes, (5, 5), (2, 2))

    return {
        "conv1 forward (conv_pool)": (lambda: F.max_pool2d(F.conv2d(x, w1, b1, padding=2), 2).relu(),
                                      lambda: native.conv_pool(x, w1, b1, (2, 2), True)),
        "conv1 weight grad (codes + pool_weight_grad)": (conv1_torch_grad, conv1_native_grad),
        "conv2 grouped forward (conv_pool)": (
            lambda: F.max_pool2d(F.conv2d(a1, w2, b2, groups=m), 2).relu(),
            lambda: native.conv_pool(a1, w2, b2, (0, 0), True, groups=m)),
        "pool before linear (pool_flat)": (
            lambda: F.max_pool2d(a2, 2).relu().unflatten(1, (m, 16)).transpose(0, 1).flatten(2),
            lambda: native.pool_flat(a2, m, relu=True)),
    }


def measure(report: Report, name: str, torch_path: Callable[[], object], kernel: Callable[[], object],
            repeats: int, before: Callable[[], None] = lambda: None) -> None:
    """Alternate the torch path and the kernel in both builds; print ms and the ≥ 1.5× verdicts."""
    def arm(fn: Callable[[], object], target: str | None) -> Callable[[], float]:
        def run() -> float:
            before()
            if target is None:
                return timed(fn)
            with build.using(target):
                return timed(fn)
        return run

    arms = {"torch": arm(torch_path, None), **{t: arm(kernel, t) for t in TARGETS}}
    took = alternate(arms, repeats)
    report.out(f"-- {name}: " + ", ".join(f"{k} {Spread.of([s * 1e3 for s in v]).format('.2f', ' ms')}"
                                          for k, v in took.items()))
    for target in TARGETS:
        report.target(f"{name}: torch / {target} build", Spread.of(per_round(operator.truediv, took["torch"],
                                                                             took[target])),
                      ">=", 1.5, unit="x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 7)
    args = parser.parse_args()
    if args.quick:
        args.repeats = min(args.repeats, 2)
    report = Report("bench_native", args.strict, counted=not args.quick)
    report.out(f"== CPU: {cpu_line()}; torch {torch.__version__}; default build: {native.status()}")
    if native.library() is None:
        report.out(f"== the C kernels are off here ({native.status()}): nothing to compare")
        return report.finish()
    for target in TARGETS:
        with build.using(target):
            report.out(f"== loaded: {native.status()}")
    sparse, kernel, restore = enforcement_case(args.quick)
    measure(report, "Freeze-SGD enforcement, AlexNet (Enforcer sparse vs native)" if not args.quick
            else "Freeze-SGD enforcement, small MLP (--quick)", sparse, kernel, args.repeats, before=restore)
    measure(report, "XOR ensemble logits (mlp_logits)", *mlp_case(), args.repeats)
    for name, (torch_path, native_path) in lenet_cases().items():
        measure(report, f"LeNet {name}", torch_path, native_path, args.repeats)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
