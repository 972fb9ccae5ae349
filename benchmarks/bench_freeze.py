"""Cost of Freeze-SGD enforcement on a training step, measured side by side in one process.

torchvision AlexNet with a 10-class head (57 M weights), a batch of 1000 3×64×64 inputs, Adam.
Every step is timed in parts — forward+backward, the Adam step, then the enforcement arms,
each on the same post-step weights (restored from a copy before each arm), so all face exactly
the same violations:

- ``auto``: polarnet's enforcer as ``freeze`` builds it by default (the path it picks for the
  device: the C kernel ``native`` on the CPU, ``sparse`` without a C compiler, the sync-free
  dense path on CUDA), keyed ``posRand`` resets;
- ``native`` / ``sparse`` / ``dense`` / ``compiled``: the paths of :class:`polarnet.Enforcer`, which
  give the same weights bit for bit (``compiled`` only with ``--compiled``: a minute of
  compilation, and on the CPU slower than ``dense``' sparse rival);
- ``masked``: a straightforward implementation (a full-size random tensor drawn and a boolean
  mask indexed every step);
- ``floor``: one read of every weight's sign.

The arms' order alternates from step to step (see ``_report.py``); ratios are taken per step,
then reported as median [min–max]. On CUDA every part is synchronised before it is timed,
``--amp`` makes forward+backward bf16 autocast, and a last step runs under
``torch.cuda.set_sync_debug_mode("warn")`` to count the synchronisations of a train step with
the hook (forward, backward, Adam, enforcement).

Checked (PASS/MISS): ``auto`` adds at most 3% to the step (fwd+bwd+Adam) and costs at most
0.25x the Adam step (CPU targets, issue 9); on CUDA, at most 5% of a bf16 step and zero syncs
per step. ``--strict`` exits 1 when a target misses.

    python benchmarks/bench_freeze.py [--repeats 5] [--batch 1000] [--size 64] [--device cpu|cuda]
                                      [--amp] [--compiled] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import warnings

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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for forward+backward")
    parser.add_argument("--compiled", action="store_true", help="also time the torch.compile'd dense path")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 32, min(args.repeats, 2)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    report = Report("bench_freeze", args.strict, counted=not args.quick)

    torch.manual_seed(0)
    model = pn.init_magnitudes(torchvision.models.alexnet(num_classes=10), seed=0)
    template = pn.PolarityTemplate.random(model, seed=0)
    pn.align(model, template)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=cuda)
    enforcers = {"auto": pn.Enforcer(model, template, "posRand", 1e-3, seed=0)}
    paths = ["native"] if device.type == "cpu" and pn.native.available() else []
    for path in (*paths, "sparse", "dense", *(["compiled"] if args.compiled else [])):
        enforcers[path] = pn.Enforcer(model, template, "posRand", 1e-3, seed=0, path=path)
    auto_path = enforcers["auto"].path
    params = [model.get_parameter(n) for n in template]
    weights = [p.detach() for p in params]
    float_signs = [template[n].to(device=device, dtype=torch.float32) for n in template]
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        sync()

    buffers = [torch.empty_like(p, dtype=torch.bool) for p in params]
    negatives = [t < 0 for t in float_signs]

    def one_pass() -> None:
        """The floor: read every weight's sign once and compare it with the template."""
        for w, buf, neg in zip(weights, buffers, negatives):
            torch.signbit(w, out=buf).ne_(neg)

    def run(enforcer: pn.Enforcer):
        return lambda: (enforcer.enforce(), sync())

    counts: list[torch.Tensor] = []
    arms = {name: run(e) for name, e in enforcers.items()}
    arms["auto"] = lambda: (counts.append(enforcers["auto"].enforce()), sync())
    arms["masked"] = lambda: (masked_enforce(weights, float_signs, 1e-3), sync())
    arms["floor"] = lambda: (one_pass(), sync())
    parts: dict[str, list[float]] = {k: [] for k in ("fwd_bwd", "adam", "resets", *arms)}
    for step, order in enumerate([list(arms), *orders(list(arms), args.repeats)]):
        fb = timed(forward_backward)
        adam = timed(lambda: (optimizer.step(), sync()))
        copies = [w.clone() for w in weights]
        took = {}
        for name in order:
            for w, c in zip(weights, copies):  # the same violations for every arm
                w.copy_(c)
            sync()
            took[name] = timed(arms[name])
        enforcers["auto"].enforce()  # untimed: the floor may have run last and left the violations in place
        copies.clear()  # free the 228 MB before the next step
        if step == 0:
            continue  # warm-up: allocator, caches, lazy init, compilation
        for key, value in (("fwd_bwd", fb), ("adam", adam), ("resets", int(counts[-1].sum())), *took.items()):
            parts[key].append(value)
    assert pn.violations(model, template) == 0

    syncs = None
    if cuda:  # a whole train step with the hook, under the sync checker
        handle = pn.freeze(model, template, optimizer, seed=1, align=False)
        forward_backward(), optimizer.step(), sync()  # warm-up of the handle's own enforcer
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
                    loss = loss_fn(model(x).float(), y)
                loss.backward()
                optimizer.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        handle.remove()

    plain = per_round(lambda f, a: f + a, parts["fwd_bwd"], parts["adam"])
    over = {k: Spread.of(per_round(lambda e, p: e / p, parts[k], plain)) for k in arms}
    vs_adam = {k: Spread.of(per_round(lambda e, a: e / a, parts[k], parts["adam"])) for k in arms}
    ms = {k: Spread.of([v * 1e3 for v in parts[k]]) for k in arms}
    n_weights = template.numel()
    resets_med = Spread.of(parts["resets"]).median

    print(f"AlexNet, {n_weights / 1e6:.1f} M constrained weights, batch {args.batch} of 3x{args.size}x{args.size}, "
          f"Adam, {device.type.upper()}{' bf16 autocast' if args.amp else ''}; {args.repeats} steps (after a warm-up), "
          f"median [min–max]")
    print(f"train step without enforcement (fwd+bwd+Adam): {Spread.of(plain).format('.3f', ' s')}")
    print(f"  of which the Adam step:                      {Spread.of(parts['adam']).format('.3f', ' s')}")
    print(f"resets per step: {resets_med:,.0f} ({resets_med / n_weights:.2%} of the weights)")
    labels = {"auto": f"auto (= {auto_path})", "native": "native path (C kernel)", "sparse": "sparse path", "dense": "dense path (sync-free)",
              "compiled": "compiled dense path", "masked": "masked enforcement", "floor": "floor (one pass over signs)"}
    for name in arms:
        print(f"{labels[name]:28s} {ms[name].format('.1f', ' ms')}   step overhead {over[name].format('.2%')}   "
              f"enforcement/Adam {vs_adam[name].format('.2f', 'x')}")
    speedup = Spread.of(per_round(lambda m, p: m / p, parts["masked"], parts["auto"]))
    print(f"polarnet is {speedup.format('.1f', 'x')} faster than the masked implementation")
    if cuda:
        print(f"synchronisations in one train step with the freeze hook: {syncs}")
        report.target("auto step overhead (CUDA)", over["auto"], "<=", 0.05, spec=".2%")
        report.target("syncs per train step", float(syncs or 0), "<=", 0, spec=".0f")
    else:
        report.target("auto step overhead", over["auto"], "<=", 0.03, spec=".2%")
        report.target("auto enforcement/Adam", vs_adam["auto"], "<=", 0.25, spec=".2f", unit="x")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
