"""The ``polarnet`` command: parses arguments and calls the library, nothing more.

One module per subcommand or family (:mod:`.template`, :mod:`.run`, :mod:`.reproduce`,
:mod:`.pretrain`, :mod:`.presets`, :mod:`.theory`, :mod:`.report` for report/compare/results),
each adding its parser with ``add_commands``; :mod:`.options` holds what they share. This
module assembles the parser and owns what every command shares: exit codes, the one-line
error, and the line an interruption prints (a command adds to it through ``on_interrupt``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from ..interrupt import Interrupted
from . import presets, pretrain, reproduce, report, run, template, theory
from .template import format_info

__all__ = ["main", "build_parser", "format_info"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polarnet`` command.

    Example:
        >>> build_parser().parse_args(["template", "info", "t.plt"]).file
        't.plt'
    """
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="polarnet", description="Fixed-polarity training and polarity transfer.")
    parser.add_argument("--version", action="version", version=f"polarnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for family in (template, run, reproduce, pretrain, presets, theory, report):  # the order `polarnet --help` lists
        family.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polarnet`` command; returns the exit status.

    0: done; 1: a study ran but some of its runs failed; 2: bad input (one line on stderr);
    130 / 143: interrupted by SIGINT / SIGTERM (finished runs are kept).

    SIGINT and SIGTERM handlers are installed before the library (and torch) is imported, so
    a signal at any moment gives the one line and the exit status, never a traceback.

    Example:
        >>> main(["template", "info", "/nonexistent.plt"])
        2
    """
    previous = _install_handlers()
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except Interrupted as e:
        return _interrupted(args, e.signum)
    except KeyboardInterrupt:
        return _interrupted(args, signal.SIGINT)
    except BrokenPipeError:  # `polarnet … | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, OSError) as e:
        print(f"polarnet: error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_handlers() -> dict[int, object]:
    """SIGINT/SIGTERM raise :class:`Interrupted` (main thread only); returns the old handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


def _interrupted(args: argparse.Namespace | None, signum: int) -> int:
    """One line saying what was kept and how to go on; the conventional exit status."""
    for s in (signal.SIGINT, signal.SIGTERM):  # a second signal must not break the message
        signal.signal(s, signal.SIG_IGN)
    name = signal.Signals(signum).name
    line = f"polarnet: interrupted by {name}"
    on_interrupt = getattr(args, "on_interrupt", None)  # what the command kept, and how to resume it
    if on_interrupt is not None:
        line += on_interrupt(args)
    print(line, file=sys.stderr)
    return 128 + int(signum)


def _one_line(error: BaseException) -> str:
    """An exception as the one line the user needs: OS errors name the file and the reason."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)
