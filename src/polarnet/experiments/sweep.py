"""Run a study: plan it, skip what the store already has, compute the rest, record it.

Re-running the same command resumes: finished (and failed) runs are skipped, runs left
``running`` by an interrupted process are trained again (training is deterministic, so they
give the numbers they would have given).

SIGINT (Ctrl-C) and SIGTERM stop a sweep cleanly: the workers are stopped, every finished
run stays in the store (a store write in progress is completed first), and
:class:`Interrupted` is raised for the caller to report.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .checks import check_study
from ..interrupt import Interrupted
from .config import Study
from .checkpoint import ensemble_checkpoint_file
from .chunks import make_chunks, resumable_chunks
from .engines import announce_engines
from .executors import EXECUTORS, default_workers, resolve_device
from .conditions import needs_source, source_report, study_looks
from .plan import RunSpec, plan
from .trainer import checkpoint_file, prepare_model, run_data
from .cost import sweep_seconds
from .progress import Progress
from .store import Store

__all__ = ["run_study", "SweepSummary", "Interrupted", "make_chunks", "resumable_chunks", "CHECKPOINTS"]

#: the folder, inside a study folder, where runs trained one at a time keep their per-epoch checkpoints
CHECKPOINTS = "checkpoints"


@dataclass
class SweepSummary:
    """What a call of :func:`run_study` did.

    Attributes:
        total: runs in the study.
        skipped: runs already in the folder and not trained again (done, or failed earlier).
        trained: runs trained by this call.
        failed: runs of this call that failed.
        failed_before: skipped runs that had failed in an earlier call (``retry_failed``
            trains them again).
        damaged: runs whose stored numbers failed their checksum and were trained again.
        seconds: wall time of the call.
    """

    folder: Path
    total: int
    skipped: int
    trained: int
    failed: int
    seconds: float
    failed_before: int = 0
    damaged: int = 0

    @property
    def done(self) -> int:
        """Runs of the study that are finished and not failed."""
        return self.total - self.failed - self.failed_before


class _Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted`, except inside :meth:`deferred` (a store
    write), where the signal waits until the write is done. Only the first signal counts: a
    second Ctrl-C while the sweep is stopping is ignored rather than breaking the clean-up."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._defer = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is not None:
            return
        self.pending = signum
        if not self._defer:
            raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
        if self.pending is not None:
            raise Interrupted(self.pending)


def preflight(study: Study, runs: list[RunSpec]) -> dict:
    """Check the study against its model (:func:`~polarnet.experiments.checks.check_study`) and
    load what every run needs — the data, the source weights — once, before any run is marked:
    a missing dataset or weights file, or a setting that can't apply to the model, is one clear
    error, not a study of failed runs.

    Returns study-level facts to store beside the settings (never in them, so no run key and
    no comparison of studies sees them): how reports show each condition (``looks``, see
    :func:`~polarnet.experiments.conditions.study_looks`), the number of classes
    (``num_classes``: :attr:`~polarnet.experiments.datasets.Data.num_classes`), and the transfer report of the source onto the model.
    """
    facts: dict = {"looks": study_looks(study)}
    check_study(study)  # settings that would fail every run fail here, before anything is written
    if not runs:
        return facts
    facts["num_classes"] = run_data(runs[0]).num_classes
    if study.source and any(needs_source(study.condition(c)) for c in study.conditions):
        model, _ = prepare_model(runs[0])  # every run has the study's architecture
        report = source_report(study, model)
        facts["transfer_report"] = report.to_dict()
        facts["transfer_report_text"] = str(report)
        first = {}
        for run in runs:
            first.setdefault(run.condition.name, run)
        for run in first.values():  # a source that fits no layer fails here, not in every run
            if needs_source(run.condition):
                prepare_model(run)
    return facts


def run_study(study: Study, folder: str | os.PathLike[str], *, executor: str = "local", workers: int | None = None,
              device: str = "auto", address: str | None = None, progress: bool = True,
              retry_failed: bool = False) -> SweepSummary:
    """Run (or resume) every run of ``study`` into ``folder/results.sqlite``.

    Finished runs are skipped; failed ones too, unless ``retry_failed``. The folder holds one
    study: runs of another study in it make this an error (see :meth:`Store.bind_study`), and
    one process at a time writes it (a second gets an error naming the first).

    Raises:
        StudyMismatch: the folder holds runs of another study.
        StoreError: the folder can't be written, is locked by another run, or is damaged.
        Interrupted: SIGINT or SIGTERM arrived (from the main thread only); finished runs are kept.

    Example:
        >>> import tempfile
        >>> from .config import load_study
        >>> s = load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]"])
        >>> folder = tempfile.mkdtemp()
        >>> run_study(s, folder, progress=False).trained
        6
        >>> run_study(s, folder, progress=False).skipped
        6
    """
    start = time.perf_counter()
    runner = EXECUTORS.get(executor)
    device = resolve_device(device)
    workers = workers or default_workers()
    if workers < 1:
        raise ValueError(f"workers={workers}: need at least 1")
    with _Signals() as signals:
        try:
            runs = plan(study)
            facts = preflight(study, runs)
            with Store(folder) as store, store.lock():
                store.bind_study(study.to_dict(), (r.key for r in runs), facts)
                damaged = store.retrain_damaged()
                finished = store.finished_keys(include_failed=not retry_failed)
                failed_before = 0 if retry_failed else len(store.failed_keys())
                todo = [r for r in runs if r.key not in finished]
                bar = Progress(len(runs), len(runs) - len(todo), enabled=progress,
                               expected=sweep_seconds(study, len(todo), workers, measure=sys.stderr.isatty())
                               if progress and todo else None)
                failed = 0
                try:
                    if todo:
                        failed = _compute(resumable_chunks(runs, todo, workers), store, bar, signals, runner,
                                          device, workers, address, Path(folder) / CHECKPOINTS)
                finally:
                    bar.close()
        except BaseException as error:
            # a library may turn our signal into its own exception (Ray's C code makes it a
            # SystemError, torch a RuntimeError): the pending signal says what happened
            if signals.pending is not None and not isinstance(error, Interrupted):
                raise Interrupted(signals.pending) from None
            raise
    return SweepSummary(Path(folder), len(runs), len(runs) - len(todo), len(todo), failed,
                        time.perf_counter() - start, failed_before, len(damaged))


def _compute(chunks: list[list[RunSpec]], store: Store, bar: Progress, signals: _Signals, runner, device: str,
             workers: int, address: str | None, checkpoints: Path) -> int:
    """Train ``chunks`` and record each as it finishes; returns how many runs failed.

    Runs trained one at a time, and ensembles, keep a checkpoint in ``checkpoints`` (written
    after epochs at a bounded cost: see :mod:`~polarnet.experiments.checkpoint`), so an
    interrupted chunk resumes at its last checkpointed epoch; a chunk's checkpoints are
    deleted once its runs are in the store.
    """
    partial_work: dict[int, float] = defaultdict(float)

    def on_progress(index: int, work: float) -> None:
        partial_work[index] += work
        bar.advance(work)

    failed = 0
    todo = [run for chunk in chunks for run in chunk]
    announce_engines(chunks, device, bar.enabled)  # one line; always when a model falls back to one at a time
    stream = runner(chunks, device, workers, address, on_progress, checkpoints=checkpoints)  # fails early (no Ray)
    try:
        store.mark_running(todo)
        for index, results in stream:
            # a signal now waits until the chunk is recorded and its checkpoints are gone: a run in
            # the store is never resumed, so a checkpoint left behind would stay for good
            with signals.deferred():
                store.record(results)
                for result in results:
                    checkpoint_file(checkpoints, result.key).unlink(missing_ok=True)
                ensemble_checkpoint_file(checkpoints, chunks[index]).unlink(missing_ok=True)
            n_failed = sum(r.status == "failed" for r in results)
            failed += n_failed
            bar.advance(len(results) - partial_work.pop(index, 0.0), finished=len(results), failed=n_failed)
        # every run is recorded now: an ensemble's file left by an earlier call that chunked the
        # runs otherwise (another number of workers), or a run's left by a kill -9 between
        # recording it and deleting its file, can't be resumed by anyone
        for stale in checkpoints.glob("*.pt") if checkpoints.is_dir() else ():
            stale.unlink(missing_ok=True)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops the executor's workers when we leave early
        if checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()  # nothing left to resume
    return failed
