"""Progress of a sweep: a tqdm bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts finished runs; shows runs done/total, failures and ETA.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(10, stream=out, every=0)
        >>> p.update(5); p.close()
        >>> "5/10" in out.getvalue()
        True
    """

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, every: float = 5.0,
                 enabled: bool = True) -> None:
        self.total, self.done, self.failed = total, done, 0
        self.exact, self.finished = float(done), 0
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.enabled = every, enabled
        self.start = self.last = time.monotonic()
        self.start_done = done
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="run", file=self.stream, dynamic_ncols=True)

    def update(self, runs: int, failed: int = 0) -> None:
        """Add finished runs (of which ``failed`` failed)."""
        self.advance(runs, finished=runs, failed=failed)

    def advance(self, work: float, finished: int = 0, failed: int = 0) -> None:
        """Add ``work`` runs' worth of progress (fractions of runs count too, as epochs finish)."""
        self.exact += work
        self.finished += finished
        self.failed += failed
        whole = int(self.exact + 1e-9) - self.done
        self.done += whole
        if not self.enabled:
            return
        if self.bar is not None:
            if whole:
                self.bar.update(whole)
            if failed:
                self.bar.set_postfix(failed=self.failed)
            return
        now = time.monotonic()
        if now - self.last >= self.every or self.finished + self.start_done >= self.total:
            self.last = now
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total:
            eta = "0s"
        elif rate > 0:
            eta = f"{(self.total - self.done) / rate:.0f}s"
        else:  # nothing finished yet in this session: no rate to extrapolate from
            eta = "--"
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"runs {self.done}/{self.total} ({self.done / max(1, self.total):.0%}){failed}, "
                f"elapsed {elapsed:.0f}s, ETA {eta}")

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
