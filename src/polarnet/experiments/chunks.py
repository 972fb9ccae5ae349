"""Units of work: how a study's runs are cut into chunks, each trained by one worker (an
ensemble, or a run on its own). The sweep trains them and the cost estimate prices them, so both
read the same cut from here.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .ensemble import supports
from .image_ensemble import image_cell, supports_images
from .plan import RunSpec

__all__ = ["make_chunks", "resumable_chunks"]


def make_chunks(runs: list[RunSpec], workers: int, target_per_worker: int = 1, min_members: int = 32) -> list[list[RunSpec]]:
    """Split runs into units of work.

    Vectorised XOR runs are grouped by hidden size (an ensemble needs one shape), then split by
    trial into about ``workers × target_per_worker`` chunks, each with every condition and
    size of its trials, so chunks cost about the same; a chunk keeps at least
    ``min_members`` runs when it can. One chunk per worker is the default: the larger an
    ensemble, the less each of its steps costs per run (progress is reported per epoch, so
    big chunks don't make the bar coarse).

    Vectorised image runs are grouped by cell (one training-set size: one architecture and
    number of steps), each cell split by whole trials into ``workers`` chunks (so every worker
    has a share of every size), smaller when ``ensemble_members`` caps them; the chunk's
    ensemble then sizes itself from the device's free memory. Other runs are chunks of one.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("fmnist-split-transfer", ["trials=2", "sizes=[50, 100]", "source=''",
        ...                                                "conditions=['frozen_rand', 'fluid_rand']"]))
        >>> [len(c) for c in make_chunks(runs, workers=2)]
        [2, 2, 2, 2]
    """
    groups: dict[int, list[RunSpec]] = defaultdict(list)
    cells: dict[tuple, list[RunSpec]] = defaultdict(list)
    chunks: list[list[RunSpec]] = []
    for run in runs:
        if run.study.vectorize and supports(run):
            groups[run.hidden].append(run)
        elif run.study.vectorize and supports_images(run):
            cells[image_cell(run)].append(run)
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
    for cell in cells.values():  # by whole trials: a trial's conditions share batches on the CPU
        cap = cell[0].study.ensemble_members or len(cell)
        trials = sorted({r.trial for r in cell})
        pieces = max(min(max(1, workers), len(trials)), math.ceil(len(cell) / cap))
        per_chunk = max(1, math.ceil(len(trials) / pieces))
        for s in range(0, len(trials), per_chunk):
            keep = set(trials[s : s + per_chunk])
            chunks.append([r for r in cell if r.trial in keep])
    return chunks


def resumable_chunks(runs: list[RunSpec], todo: list[RunSpec], workers: int) -> list[list[RunSpec]]:
    """The chunks of ``todo``: :func:`make_chunks` of the whole study ``runs``, less the runs not
    in ``todo``. A resumed call thus cuts the ensembles of the interrupted one again, however
    many of the study's chunks had finished, and finds their checkpoints (named by their runs);
    chunking ``todo`` afresh would cut other ensembles and train them from the start.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=20", "sizes=[8, 20]"]))
        >>> first, second = make_chunks(runs, workers=2)
        >>> [len(c) for c in make_chunks(second, workers=2)]  # the runs left, cut afresh
        [36, 24]
        >>> [len(c) for c in resumable_chunks(runs, second, workers=2)]  # the second chunk, whole
        [60]
    """
    keep = {r.key for r in todo}
    return [c for c in ([r for r in chunk if r.key in keep] for chunk in make_chunks(runs, workers)) if c]
