"""What every benchmark shares: alternated repeats, median [min–max], PASS/MISS, exit status.

A benchmark measures its arms side by side in one process, in rounds whose order alternates
(A B, B A, A B, …: a steady drift in the machine's speed then falls on every arm alike, which
plain A B A B does not quite do), and reports each number as its median with the smallest and
largest value of the rounds: ``12.3 ms [11.8–14.0]``. A ratio is taken per round (the arms of a
round ran next to each other) and then summarised the same way.

Each claim is checked by :meth:`Report.target`, which prints the number and ``PASS`` or ``MISS``
beside it, judged on the median; when the min–max range straddles the bound the line says so
(``noisy``), so a narrow PASS or MISS on a loaded machine is not mistaken for a firm one.
Aspirational numbers use ``goal=True`` and read ``GOAL MET`` / ``GOAL MISSED``: they are
printed just as honestly but never make a ``--strict`` run fail.

:meth:`Report.finish` prints a summary line and returns the exit status: 1 with ``--strict``
when any target missed, else 0 (a MISS is still printed). A ``--quick`` run checks that the
script works; its settings are not the ones the targets are stated for, so its verdicts are
printed but not counted.

The header and the summary print the load average (``os.getloadavg()``: the 1, 5 and 15 minute
means of runnable processes, this benchmark's own threads included) next to the number of CPUs
and torch's intra-op threads, so a reader can tell how busy the machine was.
"""

from __future__ import annotations

import argparse
import operator
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}


def add_arguments(parser: argparse.ArgumentParser, repeats: int, *aliases: str) -> None:
    """Add ``--repeats`` (with old names as ``aliases``), ``--strict`` and ``--quick``."""
    parser.add_argument("--repeats", *aliases, type=int, default=repeats, dest="repeats",
                        help=f"timed rounds of alternated arms, after a warm-up round (default {repeats})")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    parser.add_argument("--quick", action="store_true",
                        help="small settings to check that the script runs (< 1 min); verdicts not counted")


def orders(arms: Sequence[T], repeats: int) -> Iterator[list[T]]:
    """The order of ``arms`` in each of ``repeats`` rounds: as given, then reversed, alternately.

    >>> list(orders("AB", 3))
    [['A', 'B'], ['B', 'A'], ['A', 'B']]
    """
    for r in range(repeats):
        yield list(arms) if r % 2 == 0 else list(reversed(arms))


def alternate(arms: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every arm once per round in :func:`orders`; ``warmup`` rounds first, discarded.

    Each arm measures itself and returns its number (seconds, images/s, …). Returns each arm's
    numbers in round order, so ``out["a"][i]`` and ``out["b"][i]`` ran side by side.

    >>> ticks = iter(range(100))
    >>> alternate({"a": lambda: next(ticks), "b": lambda: next(ticks)}, repeats=2)
    {'a': [2, 5], 'b': [3, 4]}
    """
    for _ in range(warmup):
        for arm in arms.values():
            arm()
    out: dict[str, list[float]] = {name: [] for name in arms}
    for order in orders(list(arms), repeats):
        for name in order:
            out[name].append(arms[name]())
    return out


def timed(fn: Callable[[], object]) -> float:
    """Seconds that ``fn()`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_round(op: Callable[..., float], *series: Sequence[float]) -> list[float]:
    """``op`` applied round by round: ``per_round(operator.truediv, a, b)`` is ``[a[i] / b[i], …]``."""
    return [op(*values) for values in zip(*series, strict=True)]


@dataclass(frozen=True)
class Spread:
    """Median, min and max of a benchmark's rounds."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no measurements: run at least one round (--repeats 1)")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def format(self, spec: str = ".2f", unit: str = "") -> str:
        """``1.23 [1.10–1.50]`` followed by ``unit``; one round prints just the number.

        >>> Spread.of([0.02, 0.011, 0.03]).format(".1%")
        '2.0% [1.1%–3.0%]'
        """
        median = f"{self.median:{spec}}{unit}"
        if self.n == 1:
            return median
        return f"{median} [{self.low:{spec}}–{self.high:{spec}}{unit}]"


def load_line() -> str:
    """The load average next to the CPUs and torch's threads, for headers and summaries."""
    one, five, fifteen = os.getloadavg()
    try:
        import torch
        threads = f", torch {torch.get_num_threads()} threads"
    except ImportError:  # pragma: no cover - every benchmark has torch
        threads = ""
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs{threads}"


class Report:
    """Prints a benchmark's header, its checked numbers, and the summary that sets the exit status.

    Args:
        name: the benchmark (``bench_freeze``), shown in the header and the summary.
        strict: with ``True``, :meth:`finish` returns 1 when any counted target missed.
        counted: ``False`` for runs whose settings differ from the targets' (``--quick``):
            verdicts are printed with ``not counted`` and never fail ``--strict``.
        out: where to print (``print``); tests pass a list's ``append``.
    """

    def __init__(self, name: str, strict: bool = False, counted: bool = True,
                 out: Callable[[str], object] = print) -> None:
        self.name, self.strict, self.counted, self.out = name, strict, counted, out
        self.results: list[tuple[str, bool, bool]] = []  # (name, met, goal)
        mode = "--strict" if strict else "not strict (a MISS does not fail)"
        quick = "" if counted else "; --quick: verdicts are not counted"
        self.out(f"== {name}: {load_line()}; {mode}{quick}")

    def target(self, name: str, value: float | Spread, op: str, bound: float, *, spec: str = ".2f",
               unit: str = "", goal: bool = False) -> bool:
        """Print ``name``, the value, the bound and the verdict on one line; return whether it is met.

        ``value`` is a single number or a :class:`Spread` (judged on its median). ``op`` is one
        of ``<=``, ``<``, ``>=``, ``>``: the value must satisfy ``value op bound``. ``goal=True``
        marks an aspirational number: ``GOAL MET``/``GOAL MISSED``, never failing ``--strict``.
        """
        if op not in _OPS:
            raise ValueError(f"op {op!r}: use one of {', '.join(_OPS)}")
        spread = value if isinstance(value, Spread) else Spread(value, value, value, 1)
        met = _OPS[op](spread.median, bound)
        noisy = spread.n > 1 and _OPS[op](spread.low, bound) != _OPS[op](spread.high, bound)
        if goal:
            verdict = "GOAL MET" if met else "GOAL MISSED"
        else:
            verdict = "PASS" if met else "MISS"
        notes = [n for n, on in (("noisy: the range straddles the bound", noisy),
                                 ("not counted: --quick", not self.counted)) if on]
        kind = "goal" if goal else "target"
        self.out(f"{name}: {spread.format(spec, unit)}  ({kind} {op} {bound:{spec}}{unit})  {verdict}"
                 + (f"  ({'; '.join(notes)})" if notes else ""))
        self.results.append((name, met, goal))
        return met

    @property
    def misses(self) -> list[str]:
        """The counted targets (not goals) that missed."""
        return [name for name, met, goal in self.results if not met and not goal and self.counted]

    def finish(self) -> int:
        """Print the summary line; return the exit status (1: ``--strict`` and a target missed)."""
        targets = [(n, met) for n, met, goal in self.results if not goal]
        goals = [(n, met) for n, met, goal in self.results if goal]
        passed = sum(met for _, met in targets)
        parts = [f"{len(targets)} target(s): {passed} PASS, {len(targets) - passed} MISS"]
        if goals:
            met_goals = sum(met for _, met in goals)
            parts.append(f"{len(goals)} goal(s): {met_goals} met, {len(goals) - met_goals} missed "
                         "(goals never fail --strict)")
        if not self.counted:
            parts.append("--quick: nothing counted")
        status = 1 if self.strict and self.misses else 0
        why = f" (--strict: missed {', '.join(self.misses)})" if status else ""
        self.out(f"== {self.name}: {'; '.join(parts)}; {load_line()}; exit {status}{why}")
        return status
