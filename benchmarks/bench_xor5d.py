"""The full ``xor5d`` preset (Wang et al. Fig. 1: 1,650 runs of 100 epochs, batch 32), timed
end to end, and the speed-up of vectorised trials over training one run at a time.

Both are measured here, in one process, on the same machine and cores: the full study with
the vectorised engine (default executor and workers), then a slice of it — every condition
and size of the first ``--slice-trials`` trials — with ``vectorize=false`` (a plain
``nn.Module`` + ``torch.optim.Adam`` + ``polarnet.freeze`` loop per run) and, for a like-for-
like check, the same slice vectorised. The full study's one-at-a-time time is extrapolated
from the slice (runs of a trial cost the same in every trial).

    python benchmarks/bench_xor5d.py [--slice-trials 2] [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from polarnet.experiments import load_study, run_study
from polarnet.experiments.executors import default_workers


def timed_study(overrides: list[str], workers: int) -> tuple[float, int]:
    study = load_study("xor5d", overrides)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        summary = run_study(study, folder, workers=workers, device="cpu", progress=False)
        seconds = time.perf_counter() - start
    assert summary.failed == 0, f"{summary.failed} runs failed"
    return seconds, summary.trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice-trials", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()

    full_s, full_runs = timed_study([], args.workers)
    sliced = [f"trials={args.slice_trials}"]
    off_s, off_runs = timed_study(sliced + ["vectorize=false"], args.workers)
    vec_s, _ = timed_study(sliced, args.workers)
    off_full = off_s / off_runs * full_runs

    print(f"xor5d preset: {full_runs} runs x 100 epochs, batch 32, {args.workers} worker(s), CPU")
    print(f"full preset, vectorised:                {full_s:7.1f} s  (target <= 60 s)")
    print(f"slice ({off_runs} runs), one run at a time:  {off_s:7.1f} s  -> {off_s / off_runs * 1e3:.0f} ms per run")
    print(f"slice ({off_runs} runs), vectorised:         {vec_s:7.1f} s  -> slice speed-up {off_s / vec_s:.1f}x")
    print(f"full preset one run at a time (from the slice): {off_full:7.1f} s")
    print(f"speed-up of vectorised trials on the full preset: {off_full / full_s:.1f}x (target >= 15x)")


if __name__ == "__main__":
    main()
