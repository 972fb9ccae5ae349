"""Cost of Freeze-SGD enforcement on a training step, measured side by side in one process.

CPU, torchvision AlexNet with a 10-class head (57 M weights), a batch of 1000 3×64×64
inputs, Adam. Every step is timed in parts — forward+backward, the Adam step, then the
enforcement — and a straightforward masked implementation (a full-size random tensor
drawn and a boolean mask indexed every step) is timed on a copy of the same post-step
weights, so all face exactly the same violations: polarnet's enforcer as ``freeze`` uses it
by default (torch's RNG for ``posRand``) and seeded (keyed resets, as the studies use).
Prints medians over the steps.

    python benchmarks/bench_freeze.py [--steps 5] [--batch 1000] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

import polarnet as pn


def masked_enforce(weights: list[torch.Tensor], signs: list[torch.Tensor], eps: float) -> None:
    """The straightforward way: a dense mask and a dense random draw for every weight."""
    for w, t in zip(weights, signs):
        mask = (w * t < 0) | ((t == 0) & (w != 0))
        fresh = torch.rand_like(w) * eps * t
        w[mask] = fresh[mask]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = pn.init_magnitudes(torchvision.models.alexnet(num_classes=10), seed=0)
    template = pn.PolarityTemplate.random(model, seed=0)
    pn.align(model, template)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    enforcer = pn.Enforcer(model, template, "posRand", 1e-3)  # freeze()'s default: torch's RNG
    seeded = pn.Enforcer(model, template, "posRand", 1e-3, seed=0)  # keyed resets, as studies use
    params = [model.get_parameter(n) for n in template]
    float_signs = [template[n].to(torch.float32) for n in template]
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    buffers = [torch.empty_like(p, dtype=torch.bool) for p in params]
    negatives = [t < 0 for t in float_signs]

    def one_pass() -> None:
        """The floor: read every weight's sign once and compare it with the template."""
        for p, buf, neg in zip(params, buffers, negatives):
            torch.signbit(p.detach(), out=buf).ne_(neg)

    parts: dict[str, list[float]] = {"fwd_bwd": [], "adam": [], "polarnet": [], "seeded": [], "masked": [], "floor": [],
                                     "resets": []}
    for step in range(args.steps + 1):
        fb = timed(forward_backward)
        adam = timed(optimizer.step)
        copies = [p.detach().clone() for p in params]
        scratch = [c.clone() for c in copies]
        masked = timed(lambda: masked_enforce(scratch, float_signs, 1e-3))
        scratch.clear()
        resets: dict[str, int] = {}
        floor = timed(one_pass)
        ours = timed(lambda: resets.update(enforcer()))
        for p, c in zip(params, copies):  # the same violations again, for the seeded enforcer
            p.data.copy_(c)
        keyed = timed(seeded)
        copies.clear()  # free the 228 MB before the next step
        if step == 0:
            continue  # warm-up: allocator, caches, lazy init
        for key, value in (("fwd_bwd", fb), ("adam", adam), ("masked", masked), ("polarnet", ours), ("seeded", keyed), ("floor", floor),
                           ("resets", sum(resets.values()))):
            parts[key].append(value)
    assert pn.violations(model, template) == 0

    med = {k: statistics.median(v) for k, v in parts.items()}
    n_weights = template.numel()
    plain = med["fwd_bwd"] + med["adam"]
    print(f"AlexNet, {n_weights / 1e6:.1f} M constrained weights, batch {args.batch} of 3x{args.size}x{args.size}, "
          f"Adam, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"train step without enforcement (fwd+bwd+Adam): {plain:8.3f} s")
    print(f"  of which the Adam step:                      {med['adam']:8.3f} s")
    print(f"resets per step: {med['resets']:,.0f} ({med['resets'] / n_weights:.2%} of the weights)")
    print(f"polarnet enforcement: {med['polarnet'] * 1e3:7.1f} ms  step overhead {med['polarnet'] / plain:6.2%} "
          f"(target <= 3%)  enforcement/Adam {med['polarnet'] / med['adam']:.2f}x (goal <= 0.25x)")
    print(f"seeded (keyed resets): {med['seeded'] * 1e3:6.1f} ms  step overhead {med['seeded'] / plain:6.2%}"
          f"                 enforcement/Adam {med['seeded'] / med['adam']:.2f}x")
    print(f"masked enforcement:   {med['masked'] * 1e3:7.1f} ms  step overhead {med['masked'] / plain:6.2%}"
          f"                 enforcement/Adam {med['masked'] / med['adam']:.2f}x")
    print(f"floor, one pass over weights and template: {med['floor'] * 1e3:7.1f} ms  "
          f"({med['floor'] / med['adam']:.2f}x Adam)")
    print(f"polarnet is {med['masked'] / med['polarnet']:.1f}x faster than the masked implementation")


if __name__ == "__main__":
    main()
