"""Processes seen through /proc (Linux), for the tests that stop workers and drivers."""

from __future__ import annotations


def stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: state, ppid, …; raises OSError."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        return stat(pid)[0] != "Z"
    except OSError:
        return False
