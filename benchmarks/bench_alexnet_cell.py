"""Throughput of one ``fmnist-alexnet`` study cell (AlexNet on real Fashion-MNIST at 227 px,
batch 1000, 10,000 validation images every epoch) trained one run at a time and as one
vectorised ensemble, and the full preset's wall time extrapolated from both, on a GPU.

For each training-set size in ``--sizes`` (100 and 6000: the preset's smallest and largest),
the same runs (Frozen and Fluid RAND, ``--trials`` trials: the cost of a run does not depend on
where its template comes from, so no ImageNet weights are needed) are trained for
``--epochs`` epochs, first as an ensemble (:func:`train_image_ensemble`, its size chosen
from the free memory unless ``--members``), then one at a time (:func:`train_run`). The
first epoch of each is a warm-up (cuDNN's benchmark, allocator); the rest give seconds per
epoch per run, and images per second (training and validation images the runs saw). The
engine's CUDA defaults apply: bf16 autocast, channels-last, cudnn.benchmark.

A run's epoch costs about ``a + b·n`` (validation and overhead, plus its training images), so
the two sizes fix ``a`` and ``b`` and the full preset (7 sizes, 6 conditions, 20 trials, 100
epochs: 840 runs) is ``Σ runs · epochs · (a + b·n)``.

Checked (PASS/MISS), from issue 9, on CUDA only: the full preset extrapolates to at most
3 hours. Enforcement's share of a bf16 step and the syncs per step are
``bench_freeze.py --device cuda --amp``'s. ``--quick`` (CPU-sized: 64 px, sizes 100 and 200,
250 validation images, 1 trial, 2 epochs) checks that the script runs; not counted.

    python benchmarks/bench_alexnet_cell.py [--device cuda] [--sizes 100 6000] [--trials 4] [--epochs 3]
                                            [--members N] [--strict] [--quick]
"""

from __future__ import annotations

import argparse
import sys

import torch

from polarnet.data.images import DataError
from polarnet.experiments import load_study, plan
from polarnet.experiments.image_ensemble import ensemble_size, train_image_ensemble
from polarnet.experiments.trainer import train_run

from _report import Report, add_arguments

PRESET = "fmnist-alexnet"


def per_run_epoch(results, members: int, ensemble: bool) -> float:
    """Seconds per epoch per run, the first (warm-up) epoch left out."""
    if ensemble:  # every member records the ensemble's epoch
        walls = [e.wall for e in results[0].epochs[1:]]
        return sum(walls) / len(walls) / members
    walls = [e.wall for r in results for e in r.epochs[1:]]
    return sum(walls) / len(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, 1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 6000])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="per measurement, the first a warm-up")
    parser.add_argument("--members", type=int, default=0, help="ensemble size (0: from the free memory)")
    args = parser.parse_args()
    base = ["conditions=['frozen_rand', 'fluid_rand']", "source=''"]
    if args.quick:
        args.sizes, args.trials, args.epochs = [100, 200], 1, 2
        base += ["input_size=64", "val_size=250", "batch_size=100"]
    device = torch.device(args.device)
    report = Report("bench_alexnet_cell", args.strict, counted=not args.quick and device.type == "cuda")
    preset = load_study(PRESET, validate=False)
    study = None
    seconds: dict[tuple[str, int], float] = {}
    try:
        for n in args.sizes:
            study = load_study(PRESET, base + [f"sizes=[{n}]", f"trials={args.trials}", f"epochs={args.epochs}"])
            runs = plan(study)
            members = args.members or min(len(runs), ensemble_size(runs[0], device))
            cell = runs[:members]
            vec = train_image_ensemble(cell, device, max_members=members)
            assert all(r.status == "done" for r in vec), [r.reason for r in vec if r.status != "done"]
            seconds["vectorised", n] = per_run_epoch(vec, len(cell), True)
            one = [train_run(r, device) for r in cell[: max(2, len(cell) // 4)]]
            seconds["one at a time", n] = per_run_epoch(one, 1, False)
            for how in ("one at a time", "vectorised"):
                images = n + study.val_size
                print(f"n = {n:5d}, {how:13s} ({len(cell) if how == 'vectorised' else 1:3d} run(s) at once): "
                      f"{seconds[how, n]:7.3f} s per run-epoch, {images / seconds[how, n]:9,.0f} images/s "
                      f"(each run-epoch: {n} training and {study.val_size} validation images)")
            print(f"n = {n:5d}, vectorised speed-up: {seconds['one at a time', n] / seconds['vectorised', n]:.1f}x")
    except DataError as e:
        print(f"bench_alexnet_cell needs real Fashion-MNIST: {e}")
        return 1 if args.strict else 0
    assert study is not None
    amp, channels_last = study.fast_paths(device)
    print(f"({device.type.upper()}, {study.input_size or 28} px, batch {study.batch_size}, val {study.val_size}, "
          f"amp {amp}, channels-last {channels_last})")
    small, large = args.sizes
    for how in ("one at a time", "vectorised"):
        b = (seconds[how, large] - seconds[how, small]) / (large - small)
        a = seconds[how, small] - b * small
        runs_per_size = len(preset.conditions) * preset.trials
        total = sum(runs_per_size * preset.epochs * (a + b * n) for n in preset.sizes)
        print(f"full {PRESET} ({runs_per_size * len(preset.sizes)} runs x {preset.epochs} epochs), {how}: "
              f"{total / 3600:.1f} h extrapolated")
        if how == "vectorised":
            report.target(f"full {PRESET} extrapolated wall time (vectorised, {device.type})", total / 3600, "<=", 3,
                          spec=".1f", unit=" h")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
