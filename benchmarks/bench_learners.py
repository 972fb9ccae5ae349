"""What each learner costs: a full train step beside plain Adam's, and the ``xor5d-learners``
preset end to end.

(a) Per step, measured side by side in one process: torchvision AlexNet with a 10-class head
(57 M weights), a batch of 1000 3×64×64 inputs, on the CPU (as ``bench_freeze.py`` sets it
up). Every arm is its own copy of the same initialised model with its own optimizer:

- ``adam``: plain ``torch.optim.Adam``, no template (the reference);
- ``freeze_sgd``, ``project``, ``reparam-softplus``, ``reparam-exp``, ``reparam-abs``: Adam
  with ``polarnet.freeze(model, T, optimizer, learner=...)`` (a random template);
- ``eg``: ``polarnet.optim.AdamEG(eg_groups(model, T))`` with ``freeze(..., learner="eg")``.

A step is what a training loop does: ``zero_grad``, forward, loss, backward,
``optimizer.step()`` (with whatever the learner hooks into it: the reparametrized forward
and backward, the multiplicative update, the reset or projection after it); its two parts,
forward+backward and the optimizer step, are printed too. Arms alternate
step by step (see ``_report.py``), after one warm-up step each; each arm's step time is
divided by Adam's of the same round, then reported as median [min–max].

(b) The full ``xor5d-learners`` preset (Fig. 1's grid with each learner at 3 rates), timed end
to end on the CPU with the default executor and workers (``--no-preset`` skips it).

Checked (PASS/MISS; ``--strict`` exits 1 when one misses):
- a ``reparam-*`` or ``eg`` step costs at most 1.10x a plain Adam step (``freeze_sgd`` and
  ``project`` are printed beside them, unchecked);
- the full ``xor5d-learners`` preset takes at most 5 minutes.

``--quick`` swaps AlexNet for LeNet (batch 32 of 3×28×28), takes 2 steps per arm and runs a
tiny stand-in of the preset (every condition; 2 sizes, 1 trial, 5 epochs), to check that the
script runs; its verdicts are not counted.

    python benchmarks/bench_learners.py [--repeats 5] [--batch 1000] [--size 64] [--learners a,b]
                                        [--no-preset] [--workers N] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
import torchvision
from torch import nn

import polarnet as pn
from polarnet.experiments import load_study
from polarnet.experiments.executors import default_workers
from polarnet.learners import LEARNERS
from polarnet.models import get_model
from polarnet.optim import AdamEG, eg_groups

from _report import Report, Spread, add_arguments, alternate, per_round, timed
from _studies import timed_study

PRESET = "xor5d-learners"
ORDER = ("freeze_sgd", "project", "reparam-softplus", "reparam-exp", "reparam-abs", "eg")
QUICK_PRESET = ["sizes=[20,100]", "trials=1", "epochs=5"]  # every condition of the preset, tiny
CHECKED = ("reparam-softplus", "reparam-exp", "reparam-abs", "eg")  # within 10% of Adam
STEP_TARGET = 1.10
PRESET_TARGET = 300.0


def make_arm(base: nn.Module, template: pn.PolarityTemplate, learner: str | None, lr: float):
    """A copy of ``base`` with its optimizer (and ``learner`` frozen onto it): ``(model, optimizer)``."""
    model = copy.deepcopy(base)
    if learner == "eg":
        optimizer: torch.optim.Optimizer = AdamEG(eg_groups(model, template), lr=lr)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if learner is not None:
        pn.freeze(model, template, optimizer, learner=learner, seed=0)
    return model, optimizer


def step_timer(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               parts: dict[str, list[float]]):
    """A function that runs one full train step and returns its seconds; it also appends the
    seconds of its two parts to ``parts["fwd_bwd"]`` (zero_grad, forward, loss, backward) and
    ``parts["step"]`` (``optimizer.step()`` with the learner's hook, then zero_grad)."""
    loss_fn = nn.CrossEntropyLoss()

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    def step() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # frees the gradients between arms

    def run() -> float:
        fb, st = timed(forward_backward), timed(step)
        parts["fwd_bwd"].append(fb)
        parts["step"].append(st)
        return fb + st

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 5, "--steps")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    parser.add_argument("--learners", default=",".join(ORDER),
                        help=f"comma-separated learners to time beside Adam (default: {','.join(ORDER)})")
    parser.add_argument("--no-preset", action="store_true", help=f"skip timing the full {PRESET} preset")
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    learners = [name.strip() for name in args.learners.split(",") if name.strip()]
    for name in learners:
        LEARNERS.get(name)  # an unknown name fails here, naming the choices
    arch = "AlexNet"
    if args.quick:
        args.batch, args.size, args.repeats, arch = 32, 28, min(args.repeats, 2), "LeNet"
    report = Report("bench_learners", args.strict, counted=not args.quick)

    torch.manual_seed(0)
    base = torchvision.models.alexnet(num_classes=10) if arch == "AlexNet" else get_model("lenet", in_channels=3)
    base = pn.init_magnitudes(base, seed=0)
    template = pn.PolarityTemplate.random(base, seed=0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    names = ["adam", *learners]
    parts = {name: {"fwd_bwd": [], "step": []} for name in names}
    arms = {name: step_timer(*make_arm(base, template, None if name == "adam" else name, 1e-3), x, y, parts[name])
            for name in names}
    took = alternate(arms, args.repeats, warmup=1)
    for name in names:  # drop the warm-up's parts
        for series in parts[name].values():
            del series[:-args.repeats]

    print(f"{arch}, {template.numel() / 1e6:.1f} M constrained weights, batch {args.batch} of 3x{args.size}x{args.size}, "
          f"CPU ({torch.get_num_threads()} threads); full train step (zero_grad, fwd, bwd, step), "
          f"{args.repeats} alternated step(s) per arm after a warm-up, median [min–max]")
    ratios = {name: Spread.of(per_round(lambda a, b: a / b, took[name], took["adam"])) for name in names}

    def seconds(name: str, key: str | None = None) -> str:
        return Spread.of(parts[name][key] if key else took[name]).format(".3f", " s")

    for name in names:
        label = "adam (no template)" if name == "adam" else name
        versus = "" if name == "adam" else f"   vs Adam {ratios[name].format('.3f', 'x')}"
        print(f"{label:20s} {seconds(name):24s} (fwd+bwd {seconds(name, 'fwd_bwd'):24s} step {seconds(name, 'step')}){versus}")
    for name in learners:
        if name in CHECKED:
            report.target(f"{name} step / Adam step", ratios[name], "<=", STEP_TARGET, spec=".3f", unit="x")

    if not args.no_preset:
        runs: dict[str, int] = {}
        overrides = QUICK_PRESET if args.quick else []
        seconds = timed_study(PRESET, overrides, args.workers, runs, "preset")
        what = "quick stand-in" if args.quick else "full preset"
        study = load_study(PRESET, overrides)
        print(f"{PRESET} {what}: {runs['preset']} runs ({len(study.conditions)} conditions) x {study.epochs} epochs, "
              f"{args.workers} worker(s), CPU: {seconds:.1f} s")
        report.target(f"{PRESET} {what} wall time", seconds, "<=", PRESET_TARGET, spec=".1f", unit=" s")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
