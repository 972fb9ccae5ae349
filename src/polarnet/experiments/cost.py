"""How long a study takes on this machine: the one estimator behind ``polarnet presets``,
``polarnet reproduce``, the study limits and a run's first ETA.

A study's time is work counted from its grid, priced at this machine's rates, plus the fixed
costs of a ``polarnet run`` (measured with ``time`` on the 2-core reference machine: for
``xor5d --quick``, 18 s of which training was 9 s; ``fmnist-split-transfer --quick``, 20 s of
which training was 2 s)::

    seconds = START + SPAWN + data + makespan(chunks) + store + STOP + REPORT

* **start** and **report**: the command's own Python, torch and polarnet imports, and the
  results table and diagnostics it prints after the sweep.
* **spawn** and **stop**: starting the worker processes (each imports torch and polarnet)
  and letting them exit; only when the sweep runs more than one chunk on several CPU workers.
* **data**: an image study's dataset, read once by the driver's preflight and once more by the
  workers (in parallel); XOR data costs nothing.
* **makespan**: the chunks of :func:`~polarnet.experiments.chunks.make_chunks` (the engine's
  units of work: an XOR ensemble, an image ensemble, a run on its own), each priced by
  :func:`chunk_seconds` and handed in order to the first idle worker, as the local executor does.
* **store**: recording every run's epochs.

The rates are reference constants (below, measured on the reference machine with one thread a
worker) times a ratio per engine path measured here: :func:`calibrate` trains two epochs of
one small chunk of the study at hand on the real engine (a second or two) and keeps
``measured / reference`` in ``$XDG_CACHE_HOME/polarnet/cost.json`` under this machine's key
(CPU model, torch version, threads), as ``cudnn.benchmark`` keeps its choices. An estimate
without a measured ratio for its engine path is marked rough.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the arithmetic is beneath the study (cost_model), so the study limits price without this module;
# its rates and functions stay importable from here
from .cost_model import (DATA_S, IMAGE_CHUNK_S, IMAGE_EPOCH_S, REPORT_S, SPAWN_S, START_S, STOP_S, STORE_EPOCH_S,  # noqa: F401
                         STORE_RUN_S, XOR, XOR_SINGLE, chunk_seconds, count_runs, engine_path, even_chunks, price)
from .plan import duration

if TYPE_CHECKING:
    from .config import Study

__all__ = ["estimate_cost", "calibrate", "chunk_seconds", "engine_path", "machine_key", "describe", "sweep_seconds"]

#: the most runs for which the estimate plans the study and chunks it as the sweep would;
#: beyond, every hidden size or image cell is split evenly over the workers
PLAN_LIMIT = 20_000
#: a calibration is skipped (the estimate stays rough) when its slice would take longer than this
CALIBRATION_LIMIT_S = 5.0


def _chunks(study: Study, path: str, workers: int, planned: bool = True) -> list[tuple[int, dict[int, int]]]:
    """The study's chunks as (hidden, {size: runs}): the sweep's own chunking when the study is
    small enough to plan (and ``planned``), else :func:`even_chunks`."""
    if planned and count_runs(study) <= PLAN_LIMIT:
        from .plan import plan
        from .chunks import make_chunks

        single = path.startswith("single") or path == "xor-single"
        chunks = make_chunks(plan(replace(study, vectorize=not single)), workers)  # one run a chunk if single
        return [(c[0].hidden, dict(Counter(s.n_train for s in c))) for c in chunks]
    return even_chunks(study, path, workers)


def estimate_cost(study: Study, *, workers: int | None = None, engine: str | None = None,
                  rates: dict[str, Any] | None = None, planned: bool = True) -> dict[str, Any]:
    """Runs, training steps and estimated wall seconds of ``polarnet run`` for a study here.

    Arithmetic (a study too large to plan is never planned, so it answers at once for any
    study, however absurd), on ``workers`` CPU workers (by default this process's cores).
    ``rates`` is a machine's calibration (by default the cached one, :func:`calibrate`);
    without a measured ratio for the study's engine path the estimate is ``rough``. With
    ``planned=False`` the chunks are even shares, as for a study too large to plan: no plan is
    built and no setting is checked beyond the grid's sizes (the study limits use this, since
    they run before the settings are known to be valid).

    Returns:
        ``runs``, ``steps`` (runs' optimizer steps), ``seconds``, ``training`` (the chunks'
        makespan), ``overhead`` (seconds outside training, by part), ``rough`` and ``path``.

    Example:
        >>> from .config import load_study
        >>> cost = estimate_cost(load_study("xor5d"), rates={})
        >>> cost["runs"], cost["rough"], cost["path"]
        (1650, True, 'xor')
    """
    from .executors import default_workers

    workers = max(1, workers or default_workers())
    rates = machine_rates() if rates is None else rates
    path = engine_path(study, engine)
    # beyond PLAN_LIMIT the chunks are even shares (or, one at a time, groups of runs): no schedule
    return price(study, path, _chunks(study, path, workers, planned), workers, rates,
                 even=count_runs(study) > PLAN_LIMIT or not planned)


def sweep_seconds(study: Study, todo: int, workers: int | None = None, measure: bool = False) -> float:
    """Estimated seconds of a sweep that trains ``todo`` of the study's runs: the share of its
    training, the workers and the store (not the command's start, data check or report). The
    progress line's first ETA starts from it. With ``measure``, the study's engine path is
    timed first if this machine has no rate for it (:func:`calibrate`; ``polarnet run`` on a
    terminal does, so its ETA starts right).

    Example:
        >>> from .config import load_study
        >>> s = load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]"])
        >>> sweep_seconds(s, 0, 1, ) == 0.0 < sweep_seconds(s, 6, 1)
        True
    """
    if todo <= 0:
        return 0.0
    if measure:
        try:
            calibrate(study)
        except Exception:  # noqa: BLE001 (a slice that fails to train: the sweep will say why; estimate roughly)
            pass
    cost = estimate_cost(study, workers=workers)
    share = todo / max(1, cost["runs"])
    o = cost["overhead"]
    return (cost["training"] + o["store"]) * share + o["workers"] + o["data"] / 2


def describe(cost: dict[str, Any]) -> str:
    """An estimate as printed: ``~42 s``, and ``(rough)`` when this machine's rates are not measured.

    Example:
        >>> describe({"seconds": 42.0, "rough": True}), describe({"seconds": 150.0, "rough": False})
        ('~42 s (rough)', '~2.5 min')
    """
    return f"~{duration(cost['seconds'])}" + (" (rough)" if cost["rough"] else "")


# ----------------------------------------------------------------------------------- calibration

def machine_key() -> str:
    """What the rates are measured for: the CPU model, torch's version, its threads, and the C
    kernels' vector width (the engines take other paths without AVX-512 kernels, or any).

    Example:
        >>> import torch
        >>> torch.__version__ in machine_key()
        True
    """
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    from .. import native

    return f"{cpu} | torch {torch.__version__} | {torch.get_num_threads()} threads | kernels {native.vector_bits()}-bit"


def _cache_file() -> Path:
    from ..data.images import user_cache

    return user_cache().parent / "cost.json"


def machine_rates() -> dict[str, Any]:
    """This machine's measured rates (the cache's entry for :func:`machine_key`), ``{}`` if none.

    Example:
        >>> isinstance(machine_rates(), dict)
        True
    """
    try:
        return dict(json.loads(_cache_file().read_text()).get(machine_key(), {}))
    except (OSError, ValueError, AttributeError):  # no cache yet, or a damaged one: measure again
        return {}


def _save(rates: dict[str, Any]) -> None:
    path = _cache_file()
    try:
        try:
            table = json.loads(path.read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        table[machine_key()] = rates
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache: this process keeps what it measured, the next measures again
        pass


def _slice(study: Study, path: str) -> Study:
    """A small chunk of the study, its settings otherwise kept: two epochs and one hidden size; for
    XOR the trials of about 64 runs and 200 validation samples, for images one trial at the
    study's median size with its validation set;
    only conditions that need no source where there are such (a source may not exist yet:
    ``reproduce`` pretrains it after planning), and these cost the same per step."""
    from .conditions import needs_source

    own = tuple(c for c in study.conditions if not needs_source(study.condition(c)))
    study = replace(study, conditions=own or study.conditions)
    pairs = count_runs(study) // (len(study.sizes) * len(study.hidden) * study.trials)
    if path.startswith("xor"):
        trials = max(1, min(study.trials, 64 // max(1, pairs * len(study.sizes))))
        return replace(study, trials=trials, epochs=2, hidden=(max(study.hidden),), val_size=min(study.val_size, 200))
    # an image slice must cost what the study's runs cost, per image: its own validation set and
    # its median size (at the smallest size and 200 validation images, the per-chunk and per-epoch
    # constants made up nine tenths of the slice, and a machine's ratio came out 5x too low)
    median = sorted(study.sizes)[len(study.sizes) // 2]
    return replace(study, trials=1, epochs=2, sizes=(median,), hidden=(max(study.hidden),))


def calibrate(study: Study, *, engine: str | None = None, force: bool = False,
              pool: bool = True) -> dict[str, Any]:
    """Measure this machine's rate for the study's engine path, and keep it in the cache.

    Trains two epochs of a small chunk of the study (:func:`_slice`) on the engine the sweep
    would use (:func:`~polarnet.experiments.executors.compute_chunk`), in this process, one
    thread, and stores ``measured / reference seconds``; with ``pool``, once per machine, also
    the seconds a worker process takes to start and to exit. An image study also times reading
    its dataset. Skips (returns the rates unchanged) a path already measured unless ``force``,
    and a slice expected to take more than :data:`CALIBRATION_LIMIT_S`.

    Returns:
        this machine's rates, as :func:`estimate_cost` takes them.
    """
    import torch

    from .datasets import DATASET_LOADERS
    from .executors import compute_chunk
    from .plan import plan

    rates = machine_rates()
    path = engine_path(study, engine)
    probe = _slice(replace(study, vectorize=path in ("xor",) or path.startswith("stacked")), path)
    specs = plan(probe)
    if force or path not in rates:
        members = dict(Counter(s.n_train for s in specs))
        reference = chunk_seconds(probe, path, probe.hidden[0], members) if not path.startswith("single") and \
            path != "xor-single" else sum(chunk_seconds(probe, path, probe.hidden[0], {s.n_train: 1}) for s in specs)
        if reference * rates.get("scale", 1.0) <= CALIBRATION_LIMIT_S:
            if study.dataset != "xor":
                began = time.perf_counter()
                DATASET_LOADERS.resolve(study.dataset)(study, max(study.sizes), specs[0].data_seed, specs[0].val_seed)
                rates[f"data:{study.dataset}"] = time.perf_counter() - began
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as a worker trains
            try:
                compute_chunk(specs[:1], "cpu") if len(specs) > 1 else None  # warm: data, first-call costs
                began = time.perf_counter()
                chunks = [specs] if path in ("xor",) or path.startswith("stacked") else [[s] for s in specs]
                results = [r for chunk in chunks for r in compute_chunk(chunk, "cpu")]
                measured = time.perf_counter() - began
            finally:
                torch.set_num_threads(threads)
            # runs that failed (a source not there yet, a bad setting) took no training's time:
            # such a rate would make every later estimate of this path far too short
            if all(r.status == "done" for r in results):
                rates[path] = measured / reference
    if pool and "spawn" not in rates:
        from .executors import default_workers

        rates.update(_time_workers(default_workers()))
    _save(rates)
    return rates


def _time_workers(n: int) -> dict[str, float]:
    """Seconds ``n`` worker processes take to start together (spawn, import polarnet's engine),
    as the sweep's pool starts them, and to exit."""
    from multiprocessing import get_context

    context = get_context("spawn")
    began = time.perf_counter()
    pool = []
    for _ in range(max(1, n)):
        here, there = context.Pipe()
        process = context.Process(target=_worker_probe, args=(there,), daemon=True)
        process.start()
        there.close()
        pool.append((process, here))
    try:
        for _, here in pool:
            here.recv()
    except EOFError:  # a worker could not start: no measurement
        return {}
    spawn = time.perf_counter() - began
    began = time.perf_counter()
    for process, here in pool:
        here.send(None)
    for process, _ in pool:
        process.join(30)
    return {"spawn": spawn, "stop": time.perf_counter() - began}


def _worker_probe(conn: Any) -> None:
    from . import executors  # noqa: F401  (what a worker imports before its first chunk)

    conn.send("ready")
    conn.recv()
