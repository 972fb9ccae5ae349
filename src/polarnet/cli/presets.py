"""``polarnet presets``: list the built-in studies with their estimated cost on this machine."""

from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def _presets(args: argparse.Namespace) -> int:
    from ..experiments import estimate_cost, list_presets, load_study
    from ..experiments.cost import describe
    from ..experiments.executors import default_workers

    cores = default_workers()
    rough = False
    for name, description in list_presets().items():
        full = estimate_cost(load_study(name, validate=False), workers=cores)
        quick = estimate_cost(load_study(name, quick=True, validate=False), workers=cores)
        rough = rough or full["rough"] or quick["rough"]
        print(f"{name:<24} {description}")
        print(f"{'':<24} {full['runs']:,} runs, {describe(full)} on {cores} CPU core{'s' if cores != 1 else ''}; "
              f"--quick: {quick['runs']:,} runs, {describe(quick)}")
    if rough:
        print("(rough: this machine's speed is not measured yet for that engine; `polarnet run` or "
              "`polarnet reproduce` measures it in a few seconds, once)")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``presets`` to the ``polarnet`` parser's subcommands.

    Example:
        >>> commands = argparse.ArgumentParser(prog="polarnet").add_subparsers()
        >>> add_commands(commands)
        >>> commands.choices["presets"].parse_args([]).func.__name__
        '_presets'
    """
    presets = commands.add_parser("presets", help="list the built-in studies with their cost")
    presets.set_defaults(func=_presets)
