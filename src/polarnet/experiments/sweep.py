"""Run a study: plan it, skip what the store already has, compute the rest, record it.

Re-running the same command resumes: finished (and failed) runs are skipped, runs left
``running`` by an interrupted process are trained again from the start (training is
deterministic, so they give the numbers they would have given).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .config import Study
from .ensemble import supports
from .executors import EXECUTORS, default_workers, resolve_device
from .conditions import needs_source, source_state
from .plan import RunSpec, plan
from ..transfer import transfer
from .trainer import prepare_model, run_data
from .progress import Progress
from .store import Store

__all__ = ["run_study", "SweepSummary", "make_chunks"]


@dataclass
class SweepSummary:
    """What a call of :func:`run_study` did."""

    folder: Path
    total: int
    skipped: int
    trained: int
    failed: int
    seconds: float


def make_chunks(runs: list[RunSpec], workers: int, target_per_worker: int = 1, min_members: int = 32) -> list[list[RunSpec]]:
    """Split runs into units of work.

    Vectorised runs are grouped by hidden size (an ensemble needs one shape), then split by
    trial into about ``workers × target_per_worker`` chunks, each with every condition and
    size of its trials, so chunks cost about the same; a chunk keeps at least
    ``min_members`` runs when it can. Other runs are chunks of one. One chunk per worker is
    the default: the larger an ensemble, the less each of its steps costs per run (progress is
    reported per epoch, so big chunks don't make the bar coarse).
    """
    groups: dict[int, list[RunSpec]] = defaultdict(list)
    chunks: list[list[RunSpec]] = []
    for run in runs:
        if run.study.vectorize and supports(run):
            groups[run.hidden].append(run)
        else:
            chunks.append([run])
    target = max(1, workers * target_per_worker)
    for group in groups.values():
        trials = sorted({r.trial for r in group})
        per_trial = len(group) / len(trials)
        per_chunk = max(math.ceil(len(trials) / max(1, math.ceil(target / len(groups)))), math.ceil(min_members / per_trial))
        for s in range(0, len(trials), per_chunk):
            keep = set(trials[s : s + per_chunk])
            chunks.append([r for r in group if r.trial in keep])
    return chunks


def preflight(study: Study, runs: list[RunSpec]) -> dict:
    """Load what every run needs — the data, the source weights — once, before any run is
    marked: a missing dataset or weights file is one clear error, not a study of failed runs.

    Returns study-level facts to store: the transfer report of the source onto the model.
    """
    facts: dict = {}
    if not runs:
        return facts
    run_data(runs[0])
    if study.source and any(needs_source(study.condition(c)) for c in study.conditions):
        model, _ = prepare_model(runs[0])  # every run has the study's architecture
        _, report = transfer(source_state(study.source), model)
        facts["transfer_report"] = report.to_dict()
        facts["transfer_report_text"] = str(report)
    return facts


def run_study(study: Study, folder: str | os.PathLike[str], *, executor: str = "local", workers: int | None = None,
              device: str = "auto", address: str | None = None, progress: bool = True,
              retry_failed: bool = False) -> SweepSummary:
    """Run (or resume) every run of ``study`` into ``folder/results.sqlite``.

    Finished runs are skipped; failed ones too, unless ``retry_failed``.

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
    runs = plan(study)
    facts = preflight(study, runs)
    with Store(folder) as store:
        store.set_study({"settings": study.to_dict(), **facts})
        finished = store.finished_keys(include_failed=not retry_failed)
        todo = [r for r in runs if r.key not in finished]
        bar = Progress(len(runs), len(runs) - len(todo), enabled=progress)
        failed = 0
        if todo:
            partial_work: dict[int, float] = defaultdict(float)

            def on_progress(index: int, work: float) -> None:
                partial_work[index] += work
                bar.advance(work)

            stream = runner(make_chunks(todo, workers), device, workers, address, on_progress)  # fails early (no Ray)
            store.mark_running(todo)
            for index, results in stream:
                store.record(results)
                n_failed = sum(r.status == "failed" for r in results)
                failed += n_failed
                bar.advance(len(results) - partial_work.pop(index, 0.0), finished=len(results), failed=n_failed)
        bar.close()
    return SweepSummary(Path(folder), len(runs), len(runs) - len(todo), len(todo), failed, time.perf_counter() - start)
