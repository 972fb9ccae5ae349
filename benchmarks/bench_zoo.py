"""Freeze-SGD on a realistic set of models (``_zoo.py``): what it adds to a train step.

Per model (torchvision ResNet-18, MobileNetV3-small, ViT-B/16 at 32×32, a timm ConvNeXt-atto,
Hugging Face BERT-tiny and a two-layer GPT-2 with Conv1D layers; those whose library is
missing are skipped), built without pretrained weights: two copies of one initialised model,
each with its own ``torch.optim.Adam``; one plain, one with ``polarnet.freeze`` on a random
template over every layer ``layers="all"`` selects (seeded ``posRand``). A step is
``zero_grad``, forward, loss, backward, ``optimizer.step()``. The arms alternate step by step
(see ``_report.py``) after a warm-up step each; the overhead is the frozen step's time over the
plain one's of the same round, minus 1, as median [min–max].

Checked (PASS/MISS; ``--strict`` exits 1 when one misses): the overhead is at most 10% of a
step for every model, at batch 32 on the CPU (torch's intra-op threads; the load average is
printed). ``--quick`` takes batch 4 and 2 rounds, to check that the script runs; its verdicts
are not counted.

    python benchmarks/bench_zoo.py [--repeats 5] [--batch 32] [--models a,b] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

import polarnet as pn

from _report import Report, Spread, add_arguments, alternate, per_round, timed
from _zoo import MODELS, available

TARGET = 0.10


def step_timer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss, batch):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(model, batch).backward()
        optimizer.step()

    return lambda: timed(step)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 4, min(args.repeats, 2)
    wanted = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    report = Report("bench_zoo", args.strict, counted=not args.quick)
    print(f"train step with and without polarnet.freeze (Adam, posRand, layers='all'), batch {args.batch}, CPU "
          f"({torch.get_num_threads()} threads), {args.repeats} alternated steps per arm after a warm-up, "
          f"median [min–max]")
    for name in wanted:
        if name not in available():
            print(f"{name:20s} skipped: needs {MODELS[name].needs}, which is not installed")
            continue
        zoo = MODELS[name]
        torch.manual_seed(0)
        base = zoo.build()
        template = pn.PolarityTemplate.random(base, seed=0)
        batch = zoo.batch(args.batch, torch.Generator().manual_seed(0))
        arms = {}
        for arm in ("plain", "frozen"):
            model = copy.deepcopy(base)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            if arm == "frozen":
                pn.freeze(model, template, optimizer, seed=0)
            arms[arm] = step_timer(model, optimizer, zoo.loss, batch)
        took = alternate(arms, args.repeats, warmup=1)
        overhead = Spread.of(per_round(lambda f, p: f / p - 1, took["frozen"], took["plain"]))
        print(f"{name:20s} {template.numel() / 1e6:6.1f} M constrained weights in {len(template):3d} tensors   "
              f"plain {Spread.of(took['plain']).format('.3f', ' s'):24s} frozen "
              f"{Spread.of(took['frozen']).format('.3f', ' s'):24s}")
        report.target(f"{name} freeze overhead per step", overhead, "<=", TARGET, spec=".1%")
        del arms, base
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
