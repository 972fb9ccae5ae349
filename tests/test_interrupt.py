"""``polarnet run`` stopped by SIGINT, SIGTERM or SIGKILL at any moment, end to end (issue 8).

The contract: exit 130 (SIGINT) or 143 (SIGTERM) within seconds, exactly one line starting
"polarnet: interrupted" and never a traceback; no worker process left behind (not even after
``kill -9`` of the main process); every run finished before the signal kept; and the same
command run again completes the study.

These tests start real processes and read ``/proc``: Linux only.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import alive as _alive

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to follow the workers")]

# 18 runs of one chunk each (vectorize=false): they finish one by one, over some seconds
STUDY = ["--set", "trials=3", "--set", "epochs=30", "--set", "sizes=[20, 100]", "--set", "vectorize=false",
         "--set", "val_size=200"]
TOTAL = 18
PATIENCE = 60.0  # seconds to wait for a moment to come, or for a signalled process to exit


def _start(folder: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "polarnet.cli", "run", "xor5d", *STUDY, "--out", str(folder), "--workers", "2",
               "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _done(folder: Path) -> dict[str, float]:
    """``{run key: finished}`` of the finished runs, read without disturbing the writer."""
    path = folder / "results.sqlite"
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(db.execute("SELECT key, finished FROM runs WHERE status = 'done'"))
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or mid-write
        return {}


class _Watch:
    """A started ``polarnet run``: waits for moments while noting every process it starts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc = _start(folder)
        self.seen: set[int] = set()

    def until(self, moment, what: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while not moment():
            self.seen |= _descendants(self.proc.pid)
            assert self.proc.poll() is None, f"the run ended before {what}: {self.proc.communicate()}"
            assert time.monotonic() < deadline, f"no {what} within {PATIENCE} s"
            time.sleep(0.05)
        self.seen |= _descendants(self.proc.pid)

    def workers_busy(self) -> bool:
        return len(_descendants(self.proc.pid)) >= 3  # the two workers and multiprocessing's resource tracker

    def finish(self) -> tuple[int, str, str]:
        """Wait for the exit; returns (status as a shell reports it, stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
            pytest.fail(f"polarnet run did not exit within {PATIENCE} s of the signal: {err[-2000:]}")
        code = self.proc.returncode
        return (code if code >= 0 else 128 - code), out, err

    def assert_nothing_left(self, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while any(_alive(p) for p in self.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in self.seen if _alive(p)]
        if left:
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"processes of polarnet run still alive {seconds} s after it exited: {left}")


def _interrupt(watch: _Watch, signum: int, group: bool = False) -> None:
    """Send ``signum`` and check the contract; the finished runs must be kept."""
    before = _done(watch.folder)
    if group:  # as Ctrl-C in a terminal does: the whole foreground process group
        os.killpg(watch.proc.pid, signum)
    else:
        watch.proc.send_signal(signum)
    tick = time.monotonic()
    status, out, err = watch.finish()
    took = time.monotonic() - tick
    watch.assert_nothing_left()
    assert "Traceback" not in err, err
    after = _done(watch.folder)
    assert all(after.get(key) == finished for key, finished in before.items())  # kept, not retrained
    if status == 0 and len(after) == TOTAL:  # it finished before the signal landed (near the end)
        return
    assert status == 128 + signum, (status, err)
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0].startswith("polarnet: interrupted"), err
    assert took < 30, f"{took:.1f} s to stop"


def _kill_9(watch: _Watch) -> None:
    """SIGKILL of the main process alone: its workers must follow it within seconds."""
    workers = _descendants(watch.proc.pid)
    assert workers
    watch.proc.kill()
    watch.proc.wait(PATIENCE)
    watch.seen = workers
    watch.assert_nothing_left(5.0)


def test_signals_at_every_moment_keep_finished_runs_and_the_study_resumes(tmp_path) -> None:
    """One study, stopped again and again, then completed (one test: each step needs the last)."""
    folder = tmp_path / "study"
    # 1. SIGTERM right at the start of the sweep: the store exists, the workers are being started
    watch = _Watch(folder)
    watch.until(lambda: (folder / "results.sqlite").exists(), "results.sqlite")
    _interrupt(watch, signal.SIGTERM)

    # 2. Ctrl-C (SIGINT to the whole process group: the workers get it too) in the middle of the sweep
    watch = _Watch(folder)
    kept = len(_done(folder))
    watch.until(lambda: len(_done(folder)) >= kept + 2 and watch.workers_busy(), "runs finishing")
    _interrupt(watch, signal.SIGINT, group=True)

    # 3. kill -9 of the main process in the middle of the sweep (runs are left "running")
    watch = _Watch(folder)
    kept = len(_done(folder))
    watch.until(lambda: len(_done(folder)) >= kept + 2 and watch.workers_busy(), "runs finishing")
    _kill_9(watch)

    # 4. SIGTERM near the end, while the last runs are being recorded
    watch = _Watch(folder)
    watch.until(lambda: len(_done(folder)) >= TOTAL - 2, "the last runs")
    _interrupt(watch, signal.SIGTERM)

    # 5. the same command again completes the study, keeping every run finished before
    finished = _done(folder)
    watch = _Watch(folder)
    status, out, err = watch.finish()
    watch.assert_nothing_left()
    assert status == 0 and "Traceback" not in err, err
    done = _done(folder)
    assert len(done) == TOTAL
    assert all(done[key] == when for key, when in finished.items())
    assert not list((folder / "checkpoints").glob("*.pt"))  # removed once their runs were recorded


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_python_is_still_importing(tmp_path, signum) -> None:
    """Ctrl-C a moment after pressing Enter: still one line, no traceback."""
    watch = _Watch(tmp_path / "study")
    time.sleep(0.3)
    _interrupt(watch, signum)


# -- vectorised XOR studies (issue 22 §3) ----------------------------------------------------------

# run_study in a child process, printing the training work done so far (in runs' worth) after
# every epoch a worker reports; a chunk's completion adds no training and is not counted
_COUNTING = """
import sys
from polarnet.experiments import load_study, sweep
from polarnet.interrupt import Interrupted


class Counting(sweep.Progress):
    trained = 0.0

    def advance(self, work, finished=0, failed=0):
        super().advance(work, finished, failed)
        if not finished:
            Counting.trained += work
            print(f"trained {Counting.trained:.6f}", flush=True)


sweep.Progress = Counting
try:
    sweep.run_study(load_study("xor5d", sys.argv[2:]), sys.argv[1], workers=2, device="cpu", progress=False)
except Interrupted:
    sys.exit(130)
"""
# 360 runs, vectorised: two ensembles of 180 runs (one per worker), each recorded only when whole
VECTORISED = ["sizes=[8, 20, 32, 60, 100, 500]", "trials=20", "epochs=200"]


def _counting(folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _COUNTING, str(folder), *VECTORISED], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _trained(lines: list[str]) -> float:
    return max((float(line.split()[1]) for line in lines if line.startswith("trained ")), default=0.0)


def test_ctrl_c_halfway_through_a_vectorised_xor_study_loses_little_of_its_training(tmp_path) -> None:
    """Ctrl-C once half the study's epochs are trained, then the same call again: the work trained
    twice (trained before the signal + trained by the second call - the study's whole work) is a
    few epochs of each ensemble, not everything trained before the signal."""
    folder = tmp_path / "study"
    total = 360.0
    child = _counting(folder)
    before: list[str] = []
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            before.append(line)
            if _trained(before) >= total / 2:
                os.killpg(child.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the workers get it too
                break
        out, err = child.communicate(timeout=PATIENCE)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    first = _trained(before + out.splitlines())
    assert child.returncode == 130 and total / 2 <= first < total, (child.returncode, first, err[-2000:])
    assert len(_done(folder)) == 0  # neither ensemble was whole: nothing is in the store yet

    again = _counting(folder)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    assert len(_done(folder)) == 360
    retrained = first + _trained(out.splitlines()) - total
    assert retrained <= 0.1 * total, f"{retrained:.1f} runs' worth trained again of {first:.1f} before the signal"
    assert not (folder / "checkpoints").exists()  # removed once their runs were recorded
