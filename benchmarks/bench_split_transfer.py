"""The full ``fmnist-split-transfer`` preset (360 LeNet runs on real Fashion-MNIST: 6 conditions ×
6 sizes × 10 trials, 30 epochs, batch 50, 5,000 validation images every epoch), timed end to
end on the CPU, and the speed-up of vectorised image trials over training one run at a time.

As in ``bench_xor5d.py``: each round runs the full preset with the default engine (vectorised
cells, default executor and workers), a slice of it — every condition and size of the first
``--slice-trials`` trial(s) — with ``vectorize=false`` (a plain ``nn.Module`` +
``torch.optim.Adam`` + ``polarnet.freeze`` loop per run), and the same slice vectorised. The
full preset's one-at-a-time time is extrapolated from the slice of the same round (every
trial costs the same). The source the preset transfers from (LeNet pretrained by polarnet on
classes 0–4) is made first, untimed, with the command the preset names. Real Fashion-MNIST is
required (the Debian package ``dataset-fashion-mnist``).

Checked (PASS/MISS; targets, so ``--strict`` exits 1 when one misses), from issue 9:
- the full preset takes at most 12 minutes on the CPU;
- vectorised trials are at least 5x faster than one run at a time on the full preset.

``--quick`` swaps the preset for a small stand-in (2 trials, 2 sizes, 2 epochs, 1,000 validation
images) and one round, to check that the script runs; its verdicts are not counted.

    python benchmarks/bench_split_transfer.py [--repeats 1] [--slice-trials 1] [--workers N] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from polarnet.data.images import DataError
from polarnet.experiments import load_study
from polarnet.experiments.executors import default_workers
from polarnet.experiments.pretrain import pretrain

from _report import Report, Spread, add_arguments, alternate, per_round
from _studies import agreement, timed_study

PRESET = "fmnist-split-transfer"
QUICK = ["trials=2", "sizes=[50,500]", "epochs=2", "val_size=1000"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 1)
    parser.add_argument("--slice-trials", type=int, default=1)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.slice_trials = 1, 1
    report = Report("bench_split_transfer", args.strict, counted=not args.quick)

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "fmnist-classes-0-4.pt"
        try:  # the preset's own recipe: polarnet pretrain --dataset fashion_mnist --classes 0,1,2,3,4 --arch lenet
            pretrain("fashion_mnist", source, arch="lenet", classes=(0, 1, 2, 3, 4), device="cpu")
        except DataError as e:
            print(f"bench_split_transfer needs real Fashion-MNIST: {e}")
            return 1 if args.strict else 0
        base = [f"source='{source}'", *(QUICK if args.quick else [])]
        sliced = base + [f"trials={args.slice_trials}"]
        runs: dict[str, int] = {}
        for extra in ([], ["vectorize=false"]):  # warm-up: imports, worker start, data caches
            timed_study(PRESET, base + ["trials=1", "sizes=[50]", "epochs=1", "val_size=500", *extra], args.workers,
                        runs, "warm-up")
        curves: dict[str, pd.DataFrame] = {}
        took = alternate({
            "full": lambda: timed_study(PRESET, base, args.workers, runs, "full"),
            "off": lambda: timed_study(PRESET, sliced + ["vectorize=false"], args.workers, runs, "slice", curves, "off"),
            "vec": lambda: timed_study(PRESET, sliced, args.workers, runs, "slice", curves, "vec"),
        }, args.repeats, warmup=0)
    full_runs, off_runs = runs["full"], runs["slice"]
    off_full = per_round(lambda s: s / off_runs * full_runs, took["off"])

    what = "quick stand-in" if args.quick else "full preset"
    study = load_study(PRESET, base[1:] if args.quick else [], validate=False)
    print(f"{PRESET} {what}: {full_runs} runs x {study.epochs} epochs, batch {study.batch_size}, "
          f"val {study.val_size}, {args.workers} worker(s), CPU; {args.repeats} round(s), median [min–max]")
    full = Spread.of(took["full"])
    print(f"{what}, vectorised:          {full.format('.1f', ' s')} ({full.median / 60:.1f} min)")
    print(f"slice ({off_runs} runs), one run at a time: {Spread.of(took['off']).format('.1f', ' s')}  -> "
          f"{Spread.of([s / off_runs for s in took['off']]).format('.2f', ' s')} per run")
    print(f"slice ({off_runs} runs), vectorised:        {Spread.of(took['vec']).format('.1f', ' s')}  -> "
          f"slice speed-up {Spread.of(per_round(lambda o, v: o / v, took['off'], took['vec'])).format('.1f', 'x')}")
    print(f"{what}, one run at a time (from the slice): {Spread.of(off_full).format('.1f', ' s')} "
          f"({Spread.of(off_full).median / 60:.1f} min)")
    print(f"slice, vectorised vs one run at a time (same runs and seeds): {agreement(curves['off'], curves['vec'])}")
    report.target(f"{what} wall time (vectorised)", full, "<=", 12 * 60, spec=".0f", unit=" s")
    report.target(f"speed-up of vectorised trials on the {what}",
                  Spread.of(per_round(lambda o, f: o / f, off_full, took["full"])), ">=", 5, spec=".1f", unit="x")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
