"""``polarnet theory xor``: the learnability theory of Wang et al. (App. D), optionally beside a
finished ``xor5d-width`` study's simulated fraction."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import at_least, output_file

__all__ = ["add_commands"]


def _units(text: str) -> list[int]:
    """``1:64`` (inclusive range), ``3,10,15``, or one number; every count >= 1.

    Example:
        >>> _units("3:5"), _units("3,10")
        ([3, 4, 5], [3, 10])
    """
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            units = list(range(lo, hi + 1))
        else:
            units = [int(u) for u in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO:HI (e.g. 1:64), a list (3,10,15) or a number") from None
    if not units:
        raise argparse.ArgumentTypeError(f"{text!r}: an empty range; write LO:HI with LO <= HI (e.g. 1:64)")
    if min(units) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: hidden units must be >= 1")
    return units


def _theory(args: argparse.Namespace) -> int:
    from ..analysis.theory_table import theory_table
    from ..experiments import Store

    if args.from_dir:  # check the folder before minutes of Monte Carlo
        Store.existing(args.from_dir, "polarnet run xor5d-width --out FOLDER").close()
    if args.output is not None:
        output_file(args.output, *([args.from_dir] if args.from_dir else []), suffix=".csv")
    table = theory_table(args.units, args.dims, trials=args.trials, seed=args.seed, folder=args.from_dir)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    out = Path(args.output) if args.output else (Path(args.from_dir) if args.from_dir else Path(".")) / "theory-xor.csv"
    table.to_csv(out, index=False)
    print(f"\nwrote {out}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``theory`` and its kinds to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> args = commands.choices["theory"].parse_args(["xor", "--units", "3:5"])
        >>> args.units, args.dims, args.trials
        ([3, 4, 5], None, 20000)
    """
    theory = commands.add_parser("theory", help="learnability theory (Wang et al. App. D)")
    theory_kind = theory.add_subparsers(dest="kind", required=True)
    xor = theory_kind.add_parser("xor", help="P(a randomly signed Frozen-Net can learn XOR) per hidden units")
    xor.add_argument("--units", type=_units, default=_units("1:64"), help="e.g. 1:64 or 3,10,15 (default 1:64)")
    xor.add_argument("--dims", type=at_least(2), default=None,
                     help="input dimensions, 2 of them relevant (default: the --from study's, else 5)")
    xor.add_argument("--trials", type=at_least(1), default=20000, help="Monte Carlo draws per unit count")
    xor.add_argument("--seed", type=int, default=0)
    xor.add_argument("--from", dest="from_dir", help="a finished xor5d-width study folder: add the simulated fraction")
    xor.add_argument("-o", "--output", help="CSV to write (default: theory-xor.csv in --from or here)")
    xor.set_defaults(func=_theory)
