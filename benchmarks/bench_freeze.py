"""Cost of Freeze-SGD enforcement on a training step, measured side by side in one process.

CPU, torchvision AlexNet with a 10-class head (57 M weights), a batch of 1000 3×64×64
inputs, Adam. Every step is timed in parts — forward+backward, the Adam step, then the
enforcement arms, each on the same post-step weights (restored from a copy before each arm),
so all face exactly the same violations: polarnet's enforcer as ``freeze`` uses it by default
(torch's RNG for ``posRand``), seeded (keyed resets, as the studies use), a straightforward
masked implementation (a full-size random tensor drawn and a boolean mask indexed every
step) and the floor (one read of every weight's sign). The arms' order alternates from step
to step (see ``_report.py``); ratios are taken per step, then reported as median [min–max].

Checked (PASS/MISS):
- target: polarnet's enforcement adds at most 3% to the step (fwd+bwd+Adam); ``--strict``
  exits 1 when it misses.
- goal: enforcement costs at most 0.25x the Adam step. Aspirational (the floor alone is near
  it): printed as GOAL MET / GOAL MISSED, never fails ``--strict``.

    python benchmarks/bench_freeze.py [--repeats 5] [--batch 1000] [--size 64] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torchvision
from torch import nn

import polarnet as pn
from _report import Report, Spread, add_arguments, orders, per_round, timed


def masked_enforce(weights: list[torch.Tensor], signs: list[torch.Tensor], eps: float) -> None:
    """The straightforward way: a dense mask and a dense random draw for every weight."""
    for w, t in zip(weights, signs):
        mask = (w * t < 0) | ((t == 0) & (w != 0))
        fresh = torch.rand_like(w) * eps * t
        w[mask] = fresh[mask]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 5, "--steps")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 32, min(args.repeats, 2)
    report = Report("bench_freeze", args.strict, counted=not args.quick)

    torch.manual_seed(0)
    model = pn.init_magnitudes(torchvision.models.alexnet(num_classes=10), seed=0)
    template = pn.PolarityTemplate.random(model, seed=0)
    pn.align(model, template)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    enforcer = pn.Enforcer(model, template, "posRand", 1e-3)  # freeze()'s default: torch's RNG
    seeded = pn.Enforcer(model, template, "posRand", 1e-3, seed=0)  # keyed resets, as studies use
    params = [model.get_parameter(n) for n in template]
    weights = [p.detach() for p in params]
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
        for w, buf, neg in zip(weights, buffers, negatives):
            torch.signbit(w, out=buf).ne_(neg)

    resets: dict[str, int] = {}
    arms = {"polarnet": lambda: resets.update(enforcer()), "seeded": seeded,
            "masked": lambda: masked_enforce(weights, float_signs, 1e-3), "floor": one_pass}
    parts: dict[str, list[float]] = {k: [] for k in ("fwd_bwd", "adam", "resets", *arms)}
    for step, order in enumerate([list(arms), *orders(list(arms), args.repeats)]):
        fb = timed(forward_backward)
        adam = timed(optimizer.step)
        copies = [w.clone() for w in weights]
        took = {}
        for name in order:
            for w, c in zip(weights, copies):  # the same violations for every arm
                w.copy_(c)
            took[name] = timed(arms[name])
        enforcer()  # untimed: the floor may have run last and left the violations in place
        copies.clear()  # free the 228 MB before the next step
        if step == 0:
            continue  # warm-up: allocator, caches, lazy init
        for key, value in (("fwd_bwd", fb), ("adam", adam), ("resets", sum(resets.values())), *took.items()):
            parts[key].append(value)
    assert pn.violations(model, template) == 0

    plain = per_round(lambda f, a: f + a, parts["fwd_bwd"], parts["adam"])
    over = {k: Spread.of(per_round(lambda e, p: e / p, parts[k], plain)) for k in arms}
    vs_adam = {k: Spread.of(per_round(lambda e, a: e / a, parts[k], parts["adam"])) for k in arms}
    ms = {k: Spread.of([v * 1e3 for v in parts[k]]) for k in arms}
    n_weights = template.numel()
    resets_med = Spread.of(parts["resets"]).median

    print(f"AlexNet, {n_weights / 1e6:.1f} M constrained weights, batch {args.batch} of 3x{args.size}x{args.size}, "
          f"Adam, CPU; {args.repeats} steps (after a warm-up), median [min–max]")
    print(f"train step without enforcement (fwd+bwd+Adam): {Spread.of(plain).format('.3f', ' s')}")
    print(f"  of which the Adam step:                      {Spread.of(parts['adam']).format('.3f', ' s')}")
    print(f"resets per step: {resets_med:,.0f} ({resets_med / n_weights:.2%} of the weights)")
    for name, label in (("polarnet", "polarnet enforcement"), ("seeded", "seeded (keyed resets)"),
                        ("masked", "masked enforcement"), ("floor", "floor (one pass over signs)")):
        print(f"{label:28s} {ms[name].format('.1f', ' ms')}   step overhead {over[name].format('.2%')}   "
              f"enforcement/Adam {vs_adam[name].format('.2f', 'x')}")
    speedup = Spread.of(per_round(lambda m, p: m / p, parts["masked"], parts["polarnet"]))
    print(f"polarnet is {speedup.format('.1f', 'x')} faster than the masked implementation")
    report.target("polarnet step overhead", over["polarnet"], "<=", 0.03, spec=".2%")
    report.target("polarnet enforcement/Adam", vs_adam["polarnet"], "<=", 0.25, spec=".2f", unit="x", goal=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
