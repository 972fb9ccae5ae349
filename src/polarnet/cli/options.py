"""What several ``polarnet`` commands share: the execution options of ``run`` and ``reproduce``,
a whole-number argument type, and the check of an ``-o`` output file."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_execution_arguments", "at_least", "output_file"]


def output_file(output: str, *inputs: str, suffix: str) -> Path:
    """Check an ``-o`` file path before any work: a file path, not one of the inputs, and not
    a study's store (or any file inside an input study folder that polarnet keeps there).
    ``suffix`` is what the command writes (``.plt``…), for the example a folder is answered with.

    Example:
        >>> output_file("table.csv", suffix=".csv").name
        'table.csv'
        >>> output_file("out/results.sqlite", suffix=".csv")
        Traceback (most recent call last):
        ...
        ValueError: -o out/results.sqlite: is where a study keeps its results; choose another output path
    """
    if not output.strip():
        raise ValueError("-o: an empty path; give a file path")
    path = Path(output)
    if path.is_dir():
        raise ValueError(f"-o {output}: is a folder; give a file path (e.g. {path / 'out'}{suffix})")
    if path.name.startswith("results.sqlite"):
        raise ValueError(f"-o {output}: is where a study keeps its results; choose another output path")
    for given in inputs:
        if Path(given).exists() and path.exists() and os.path.samefile(given, path):
            raise ValueError(f"-o {output}: is the input file {given}; writing it would destroy the input. "
                             f"Choose another output path")
    if path.exists() and not path.is_file():
        raise ValueError(f"-o {output}: is not a regular file; give a file path")
    return path


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``.

    Example:
        >>> at_least(1)("3")
        3
        >>> at_least(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 0: must be >= 1
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: must be >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how studies train, the same for ``run`` and ``reproduce``: executor, Ray address,
    workers, device, progress and failed runs.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_execution_arguments(parser)
        >>> args = parser.parse_args(["--workers", "2"])
        >>> args.executor, args.workers, args.device, args.no_progress, args.retry_failed
        ('local', 2, 'auto', False, False)
    """
    parser.add_argument("--executor", default="local", choices=["local", "ray"])
    parser.add_argument("--address", help="Ray cluster address (with --executor ray)")
    parser.add_argument("--workers", type=at_least(1), help="processes (local) or CPUs (local Ray); default: all cores")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    parser.add_argument("--retry-failed", action="store_true",
                        help="train failed runs again (they are skipped otherwise)")
