"""The exception that stops a sweep on SIGINT or SIGTERM (standard library only, so the
``polarnet`` command can install its handlers before torch is imported)."""

from __future__ import annotations

import signal

__all__ = ["Interrupted"]


class Interrupted(BaseException):
    """A run was stopped by a signal; every run finished before it is in the store.

    A ``BaseException`` (like ``KeyboardInterrupt``), so code that turns a failing run's
    ``Exception`` into a failed run never swallows it.

    Attributes:
        signum: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
        exit_code: the conventional exit status, ``128 + signum`` (130, 143).

    Example:
        >>> Interrupted(signal.SIGTERM).exit_code
        143
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
