"""``polarnet report``, ``compare`` and ``results``: the commands that read finished studies
(a report, two studies side by side, the runs and epochs tables exported)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .options import output_file

__all__ = ["add_commands"]


def _report(args: argparse.Namespace) -> int:
    import errno

    from ..analysis.report import build_report, report_paths

    try:
        html_path, md_path = build_report(args.folder, args.output)
    except OSError as e:  # matplotlib's savefig, for one, names no file: say where the report was going
        if e.filename and e.errno != errno.ENOSPC:
            raise
        where = e.filename or report_paths(args.folder, args.output).parent
        fix = "free space there, or write the report elsewhere with -o FOLDER" if e.errno == errno.ENOSPC else \
            "the report is written there (-o FOLDER writes it elsewhere)"
        raise OSError(e.errno, f"{e.strerror or e} while writing the report; {fix}", str(where)) from None
    print(f"wrote {html_path}\nwrote {md_path}")
    _say_unfinished(args.folder)
    return 0


def _say_unfinished(folder: str | Path) -> None:
    """One line on stderr when the study's planned runs are not all in its store."""
    from ..experiments import Store

    with Store.existing(folder) as store:
        line = store.unfinished_line()
    if line:
        print(line, file=sys.stderr)


def _accuracy(text: str) -> float:
    """An argparse type: an accuracy in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number such as 0.8") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"{text}: an accuracy in (0, 1], e.g. 0.8")
    return value


def _write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing."""
    from ..fileformat import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode(), "Markdown file", ValueError)


def _compare(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare_studies, difference_lines
    from ..analysis.report import markdown_table

    if args.output is not None:
        output_file(args.output, suffix=".md")
    table = compare_studies(args.folder_a, args.folder_b, args.threshold, allow_different=args.allow_different)
    attrs = table.attrs
    differences = "\n".join(difference_lines(table))  # or the line saying there are none
    text = (f"# {attrs['study_a']} ({args.folder_a}) vs {attrs['study_b']} ({args.folder_b})\n\n{differences}\n\n" +
            f"Epochs to {attrs['threshold']:.0%}, success rate, median error at convergence and mean final accuracy; "
            f"_a, _b and b − a.\n\n" + markdown_table(table))
    print(text)
    if args.output:
        _write_text(Path(args.output), text + "\n")
        print(f"\nwrote {args.output}")
    return 0


def _results(args: argparse.Namespace) -> int:
    from ..experiments import Store

    folder = Path(args.folder)
    out = Path(args.output) if args.output else folder
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {args.output}: is a file; -o names a folder for runs.{args.to} and epochs.{args.to}")
    with Store.existing(folder) as store:
        tables = {"runs": store.runs(), "epochs": store.epochs()}
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        path = out / f"{name}.{args.to}"
        if args.to == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        print(f"wrote {path} ({len(frame):,} rows)")
    _say_unfinished(folder)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``report``, ``compare`` and ``results`` to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> list(commands.choices)
        ['report', 'compare', 'results']
        >>> commands.choices["compare"].parse_args(["a", "b", "--threshold", "0.9"]).threshold
        0.9
    """
    report = commands.add_parser("report", help="write report.html (self-contained) and report.md for a study")
    report.add_argument("folder")
    report.add_argument("-o", "--output", help="a folder, or a file path whose stem names both files (default: the study folder)")
    report.set_defaults(func=_report)

    compare = commands.add_parser("compare", help="two studies side by side (e.g. CPU vs GPU, two reset rules)")
    compare.add_argument("folder_a")
    compare.add_argument("folder_b")
    compare.add_argument("--threshold", type=_accuracy, help="accuracy threshold (default: study A's first)")
    compare.add_argument("-o", "--output", help="also write the table as Markdown here")
    compare.add_argument("--allow-different", action="store_true",
                         help="compare studies of different datasets or models (refused otherwise)")
    compare.set_defaults(func=_compare)

    results = commands.add_parser("results", help="export a study's runs and epochs tables")
    results.add_argument("folder")
    results.add_argument("--to", choices=["csv", "parquet"], default="csv")
    results.add_argument("-o", "--output", help="folder for runs.<ext> and epochs.<ext> (default: the study folder)")
    results.set_defaults(func=_results)
