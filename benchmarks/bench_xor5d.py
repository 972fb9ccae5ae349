"""The full ``xor5d`` preset (Wang et al. Fig. 1: 1,650 runs of 100 epochs, batch 32), timed
end to end, and the speed-up of vectorised trials over training one run at a time.

Both are measured here, in one process, on the same machine and cores, in alternated rounds
(see ``_report.py``): each round runs the full study with the vectorised engine (default
executor and workers), a slice of it — every condition and size of the first
``--slice-trials`` trials — with ``vectorize=false`` (a plain ``nn.Module`` +
``torch.optim.Adam`` + ``polarnet.freeze`` loop per run) and, for a like-for-like check, the
same slice vectorised. The full study's one-at-a-time time is extrapolated from the slice
of the same round (runs of a trial cost the same in every trial). A tiny study of each kind
runs first as a warm-up. Numbers are median [min–max] over the rounds.

Checked (PASS/MISS; both are targets, so ``--strict`` exits 1 when either misses):
- the full preset, vectorised, takes at most 60 s;
- vectorised trials are at least 15x faster than one run at a time on the full preset.

``--quick`` swaps the full preset for a small stand-in (4 trials, 3 sizes, 20 epochs) and two
rounds, to check that the script runs; its verdicts are not counted.

    python benchmarks/bench_xor5d.py [--repeats 3] [--slice-trials 2] [--workers N] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys

from polarnet.experiments import load_study
from polarnet.experiments.executors import default_workers

from _report import Report, Spread, add_arguments, alternate, per_round
from _studies import timed_study

QUICK = ["trials=4", "epochs=20", "sizes=[8,60,500]"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 3)
    parser.add_argument("--slice-trials", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    base = QUICK if args.quick else []
    if args.quick:
        args.repeats, args.slice_trials = min(args.repeats, 2), 1
    report = Report("bench_xor5d", args.strict, counted=not args.quick)

    runs: dict[str, int] = {}
    sliced = base + [f"trials={args.slice_trials}"]
    for extra in ([], ["vectorize=false"]):  # warm-up: imports, worker start, caches
        timed_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", *extra], args.workers, runs, "warm-up")
    took = alternate({
        "full": lambda: timed_study("xor5d", base, args.workers, runs, "full"),
        "off": lambda: timed_study("xor5d", sliced + ["vectorize=false"], args.workers, runs, "slice"),
        "vec": lambda: timed_study("xor5d", sliced, args.workers, runs, "slice"),
    }, args.repeats, warmup=0)
    full_runs, off_runs = runs["full"], runs["slice"]
    off_full = per_round(lambda s: s / off_runs * full_runs, took["off"])

    what = "quick stand-in" if args.quick else "full preset"
    study = load_study("xor5d", base)
    print(f"xor5d {what}: {full_runs} runs x {study.epochs} epochs, batch {study.batch_size}, {args.workers} worker(s), CPU; "
          f"{args.repeats} alternated round(s), median [min–max]")
    full = Spread.of(took["full"])
    print(f"{what}, vectorised:          {full.format('.1f', ' s')}")
    print(f"slice ({off_runs} runs), one run at a time: {Spread.of(took['off']).format('.1f', ' s')}  -> "
          f"{Spread.of([s / off_runs * 1e3 for s in took['off']]).format('.0f', ' ms')} per run")
    print(f"slice ({off_runs} runs), vectorised:        {Spread.of(took['vec']).format('.1f', ' s')}  -> "
          f"slice speed-up {Spread.of(per_round(lambda o, v: o / v, took['off'], took['vec'])).format('.1f', 'x')}")
    print(f"{what}, one run at a time (from the slice): {Spread.of(off_full).format('.1f', ' s')}")
    report.target(f"{what} wall time (vectorised)", full, "<=", 60, spec=".1f", unit=" s")
    report.target(f"speed-up of vectorised trials on the {what}",
                  Spread.of(per_round(lambda o, f: o / f, off_full, took["full"])), ">=", 15, spec=".1f", unit="x")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
