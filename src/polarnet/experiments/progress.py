"""Progress of a sweep: a tqdm bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts finished runs; shows runs done/total, failures and ETA.

    The ETA starts from ``expected`` (the estimated seconds of this session's work,
    :func:`~polarnet.experiments.cost.sweep_seconds`) and moves to the measured rate as work
    finishes. The rate is measured from the first progress report on, so the seconds the
    workers take to start don't count as training: extrapolated from the first epoch, they made
    a first ETA of 887 s for a 40 s study. Without ``expected``, the ETA waits for a second report.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(10, stream=out, every=0)
        >>> p.update(5); p.close()
        >>> "5/10" in out.getvalue()
        True
    """

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, every: float = 5.0,
                 enabled: bool = True, expected: float | None = None) -> None:
        self.total, self.done, self.failed = total, done, 0
        self.exact, self.finished = float(done), 0
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.enabled = every, enabled
        self.start = self.last = time.monotonic()
        self.start_done = done
        self.expected = expected
        self.first: tuple[float, float] | None = None  # (time, work done) at the first report
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            # tqdm's own remaining time extrapolates from the start, workers' start-up included
            self.bar = tqdm(total=total, initial=done, unit="run", file=self.stream, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {postfix}]")
            self.bar.set_postfix_str(self.eta(self.start))

    def update(self, runs: int, failed: int = 0) -> None:
        """Add finished runs (of which ``failed`` failed)."""
        self.advance(runs, finished=runs, failed=failed)

    def advance(self, work: float, finished: int = 0, failed: int = 0) -> None:
        """Add ``work`` runs' worth of progress (fractions of runs count too, as epochs finish)."""
        self.exact += work
        if self.first is None:  # the rate counts the work reported after this
            self.first = (time.monotonic(), self.exact)
        self.finished += finished
        self.failed += failed
        whole = int(self.exact + 1e-9) - self.done
        self.done += whole
        if not self.enabled:
            return
        if self.bar is not None:
            failed_note = f", {self.failed} failed" if self.failed else ""
            self.bar.set_postfix_str(self.eta(time.monotonic()) + failed_note, refresh=False)
            if whole:
                self.bar.update(whole)
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.finished + self.start_done >= self.total:
            self.last = now
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def remaining(self, now: float) -> float | None:
        """Estimated seconds left: the estimate's remainder, blended into the measured rate's
        as this session's work gets done (half each at 10% of it); ``None`` with neither.
        ``now`` is a :func:`time.monotonic` time.

        Example:
            >>> p = Progress(100, enabled=False, expected=50.0)
            >>> p.remaining(p.start + 10)  # nothing measured yet: the estimate, counted down
            40.0
            >>> p.advance(1); p.first = (p.start + 10, 1.0); p.advance(9)
            >>> p.remaining(p.start + 20)  # 9 runs in the 10 s since the first report: 100 s measured, 45 estimated
            72.5
        """
        elapsed = now - self.start
        todo = max(1e-9, self.total - self.start_done)
        share = min(1.0, (self.exact - self.start_done) / todo)
        if share >= 1.0:
            return 0.0
        measured = None
        if self.first is not None and now > self.first[0] and self.exact > self.first[1]:
            rate = (self.exact - self.first[1]) / (now - self.first[0])
            measured = (self.total - self.exact) / rate
        if self.expected is None:
            return measured
        # before the first report the workers are starting: count the estimate down; after, its share of work left
        guess = max(0.0, self.expected - elapsed) if self.first is None else self.expected * (1 - share)
        if measured is None:
            return guess
        weight = 0.1 / (0.1 + share)  # the estimate's weight: 1 at the start, 1/2 at 10% done
        return weight * guess + (1 - weight) * measured

    def eta(self, now: float) -> str:
        """The ETA as shown: ``42s``, or ``--`` when there is nothing to go by yet."""
        left = self.remaining(now)
        return "--" if left is None else f"{left:.0f}s"

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        eta = "0s" if self.done >= self.total else self.eta(now)
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"runs {self.done}/{self.total} ({self.done / max(1, self.total):.0%}){failed}, "
                f"elapsed {elapsed:.0f}s, ETA {eta}")

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
