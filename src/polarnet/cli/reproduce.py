"""``polarnet reproduce``: run every study the papers' claims need that this machine can, and
write one scorecard (the work is :func:`polarnet.reproduce.reproduce`'s)."""

from __future__ import annotations

import argparse
import sys

from .options import add_execution_arguments

__all__ = ["add_commands"]


def _reproduce(args: argparse.Namespace) -> int:
    from ..reproduce import reproduce

    result = reproduce(args.out, args.budget, executor=args.executor, workers=args.workers, device=args.device,
                       address=args.address, data_root=args.data_root, only=args.only or (),
                       progress=not args.no_progress, retry_failed=args.retry_failed, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    ran = [o for o in result.outcomes if o.folder is not None and not o.failed]
    failed = [o for o in result.outcomes if o.failed]
    print(f"\n{len(ran)} studies ran, {len(failed)} failed, {len(result.outcomes) - len(ran) - len(failed)} not run "
          f"(reasons above), {result.seconds:.0f} s")
    if result.scorecard is not None:
        print("wrote " + "\nwrote ".join(map(str, result.scorecard)))
    for outcome in failed:
        print(f"polarnet: {outcome.key}: {outcome.reason}", file=sys.stderr)
    return 0 if result.ok else 1


def _on_interrupt(args: argparse.Namespace) -> str:
    """What the interruption line adds for ``polarnet reproduce``."""
    return "; finished studies and runs are kept. Run the same command again to resume"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``reproduce`` to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> args = commands.choices["reproduce"].parse_args(["--only", "xor5d", "--dry-run"])
        >>> args.out, args.budget, args.only, args.dry_run
        ('out/reproduce', 'quick', ['xor5d'], True)
    """
    rep = commands.add_parser(
        "reproduce", help="run every study the papers' claims need that this machine can, and write one scorecard",
        description="Plan every study the papers' claims need, print the plan (settings, estimated cost on this "
                    "machine, and why a study can't run here), run what fits the budget into OUT/studies/<study>/ "
                    "(resumable: finished studies are reused), write each study's report and OUT/scorecard.html "
                    "and .md. Exit status 0 when every planned study ran, 1 when one failed.")
    rep.add_argument("--out", default="out/reproduce", help="folder for everything (default: out/reproduce)")
    rep.add_argument("--budget", default="quick", choices=["quick", "cpu", "gpu"],
                     help="quick: reduced settings, minutes on 2 cores; cpu: the paper's settings where a CPU "
                          "manages them, reduced elsewhere; gpu: the paper's settings (default: quick)")
    rep.add_argument("--only", action="append", metavar="STUDY", help="run only this study; repeatable")
    rep.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    add_execution_arguments(rep)
    rep.add_argument("--data-root", help="where image datasets are looked for first (default: OUT/data)")
    rep.set_defaults(func=_reproduce, on_interrupt=_on_interrupt)
