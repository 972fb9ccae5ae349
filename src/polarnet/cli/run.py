"""``polarnet run``: run (or resume) a study, print its summary, and say what an interruption kept."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import add_execution_arguments

__all__ = ["add_commands"]


def _run(args: argparse.Namespace) -> int:
    from ..analysis.diagnostics import diagnose, format_flags
    from ..analysis.metrics import format_summary, run_metrics, summary_table
    from ..experiments import Store, load_study, run_study

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"data_root={json.dumps(args.data_root)}")
    if args.download:
        overrides.append("download=true")
    study = load_study(args.study, overrides, quick=args.quick)
    folder = Path(args.out) if args.out else Path("out") / (study.name + ("-quick" if args.quick else ""))
    args.folder = folder  # for the line an interruption prints
    summary = run_study(study, folder, executor=args.executor, workers=args.workers, device=args.device,
                        address=args.address, progress=not args.no_progress, retry_failed=args.retry_failed)
    print(_sweep_line(study.name, folder, summary))
    with Store.existing(folder) as store:
        runs, epochs, facts = store.runs(), store.epochs(), store.study()
    settings = facts.get("settings", {})
    threshold = study.thresholds[0]
    if len(epochs):
        print(f"\nMedians over trials; epochs to {threshold:.0%} validation accuracy count the runs that reached it.")
        print(format_summary(summary_table(run_metrics(epochs, threshold), settings), threshold))
    print("\n" + format_flags(diagnose(runs, epochs, settings, facts.get("num_classes"))))
    print(f"\nresults: {folder / 'results.sqlite'}")
    failed = summary.failed + summary.failed_before
    if failed:
        print(f"polarnet: {failed} of {summary.total} runs failed; their reasons are in `polarnet results {folder}` "
              f"(runs table, column reason). Fix the cause, then run again with --retry-failed", file=sys.stderr)
        return 1
    return 0


def _sweep_line(name: str, folder: Path, summary) -> str:
    """One line on what a ``polarnet run`` did, failed runs counted apart from finished ones."""
    trained = f"{summary.trained} runs trained" + (f" ({summary.failed} failed)" if summary.failed else "")
    kept = summary.skipped - summary.failed_before
    already = f"{kept} already done in {folder}"
    if summary.failed_before:
        already += f", {summary.failed_before} failed earlier and skipped (--retry-failed trains them again)"
    damaged = f", {summary.damaged} damaged in the store and trained again" if summary.damaged else ""
    return f"{name}: {trained}, {already}{damaged}, {summary.seconds:.1f} s"


def _on_interrupt(args: argparse.Namespace) -> str:
    """What the interruption line adds for ``polarnet run``: what was kept and how to go on."""
    return f"; finished runs are kept. Run the same command again to resume{_kept(args)}"


def _kept(args: argparse.Namespace) -> str:
    from ..experiments import Store

    folder = getattr(args, "folder", None)
    if folder is None or not (folder / "results.sqlite").is_file():
        return ""
    try:
        with Store.existing(folder) as store:
            counts = store.counts()
    except ValueError:
        return ""
    return f" ({counts.get('done', 0)} runs done in {folder}{_checkpointed(folder)})"


def _checkpointed(folder: Path) -> str:
    """What the interrupted sweep left part-trained: ensembles and runs with a checkpoint, which
    resume at their last checkpointed epoch rather than from the start."""
    from ..experiments.sweep import CHECKPOINTS

    files = sorted((folder / CHECKPOINTS).glob("*.pt")) if (folder / CHECKPOINTS).is_dir() else []
    ensembles = sum(f.name.startswith("ensemble-") for f in files)
    runs = len(files) - ensembles
    parts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((ensembles, "ensemble"), (runs, "run")) if n]
    return f"; {' and '.join(parts)} part-trained, resumed from their checkpoints" if parts else ""


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> args = commands.choices["run"].parse_args(["xor5d", "--set", "trials=2", "--quick"])
        >>> args.study, args.set, args.quick, args.executor
        ('xor5d', ['trials=2'], True, 'local')
    """
    run = commands.add_parser(
        "run", help="run (or resume) a study: a preset name or a TOML file",
        description="Run (or resume) a study: a preset or a TOML file. Your own model: model = "
                    "\"package.module:function\" in the file, or --set model='mypkg.nets:build' (the function gets "
                    "the dataset's arguments and returns an nn.Module). Your own data: dataset = "
                    "\"package.module:function\", a loader returning polarnet.experiments.datasets.Data "
                    "(README: \"Your model, your data\").")
    run.add_argument("study", help="preset name (see `polarnet presets`) or a study TOML file")
    run.add_argument("--out", help="study folder (default: out/<name>[-quick])")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting; repeatable")
    run.add_argument("--quick", action="store_true", help="the preset's small version (about a minute on 2 cores)")
    add_execution_arguments(run)
    run.add_argument("--data-root", help="where image datasets are (same as --set data_root=DIR)")
    run.add_argument("--download", action="store_true", help="let torchvision download missing image data")
    run.set_defaults(func=_run, on_interrupt=_on_interrupt)
