"""Where chunks of runs are computed: this machine's cores, or a Ray cluster.

Workers only compute; results come back to the driver, which alone writes the store. A
chunk that raises becomes failed runs carrying the error, and the sweep goes on.

An executor is ``executor(chunks, device, workers, address, progress)`` and yields
``(chunk index, results)`` as chunks finish; where it can, it also calls
``progress(chunk index, runs' worth of work)`` as epochs finish, in the driver process.
"""

from __future__ import annotations

import os
import traceback
import queue as queue_module
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import partial
from multiprocessing import get_context

import torch

from ..registry import Registry
from .ensemble import supports, train_ensemble
from .plan import RunSpec
from .results import RunResult
from .trainer import train_run

__all__ = ["EXECUTORS", "compute_chunk", "resolve_device"]

Progress = Callable[[int, float], None]
Executor = Callable[..., Iterator[tuple[int, list[RunResult]]]]
EXECUTORS: Registry[Executor] = Registry("executor")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: choose auto, cpu or cuda")
    return device


def compute_chunk(specs: Sequence[RunSpec], device: str, on_epoch: Callable[[float], None] | None = None) -> list[RunResult]:
    """Train a chunk (an ensemble when possible, else one run at a time); never raises.

    ``on_epoch(runs)`` is told after every epoch how many runs' worth of work it finished.
    """
    try:
        if len(specs) > 1 and specs[0].study.vectorize and supports(specs[0]):
            return train_ensemble(specs, device, on_epoch=on_epoch)
        return [_one(spec, device, on_epoch) for spec in specs]
    except Exception as e:  # a failing chunk must not take the sweep down
        reason = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        return [RunResult(s.key, "failed", reason=reason, device=device) for s in specs]


def _one(spec: RunSpec, device: str, on_epoch: Callable[[float], None] | None) -> RunResult:
    try:
        return train_run(spec, device, on_epoch=on_epoch)
    except Exception as e:
        return RunResult(spec.key, "failed", reason=f"{type(e).__name__}: {e}", device=device)


_CHANNEL = None  # a worker's queue to the driver, set when the worker starts


def _worker_init(threads: int, channel=None) -> None:
    global _CHANNEL
    torch.set_num_threads(threads)
    _CHANNEL = channel


def _report(index: int, runs: float) -> None:
    if _CHANNEL is not None:
        _CHANNEL.put((index, runs))


def _pooled_chunk(index: int, specs: Sequence[RunSpec], device: str) -> tuple[int, list[RunResult]]:
    return index, compute_chunk(specs, device, partial(_report, index))


@EXECUTORS.register("local")
def local(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None,
          progress: Progress | None = None) -> Iterator[tuple[int, list[RunResult]]]:
    """This machine: ``workers`` processes of one thread each (in-process when 1 or on CUDA)."""
    if workers <= 1 or device != "cpu" or len(chunks) == 1:
        for index, chunk in enumerate(chunks):
            on_epoch = partial(progress, index) if progress is not None else None
            yield index, compute_chunk(chunk, device, on_epoch)
        return
    context = get_context("spawn")
    channel = context.Queue()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init, initargs=(1, channel)) as pool:
        pending = {pool.submit(_pooled_chunk, i, chunk, device) for i, chunk in enumerate(chunks)}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(channel, progress)
            for future in finished:
                yield future.result()
        _drain(channel, progress)


def _drain(channel, progress: Progress | None) -> None:
    while True:
        try:
            index, runs = channel.get_nowait()
        except queue_module.Empty:
            return
        if progress is not None:
            progress(index, runs)


@EXECUTORS.register("ray")
def ray_executor(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None,
                 progress: Progress | None = None) -> Iterator[tuple[int, list[RunResult]]]:
    """A Ray cluster (``address``) or a local Ray instance; needs ``pip install polarnet[ray]``.

    Checks that Ray can be imported when called, before the sweep writes anything. Progress
    is reported per finished chunk.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'polarnet[ray]'") from None
    return _ray_stream(ray, chunks, device, workers, address)


def _ray_stream(ray, chunks, device, workers, address):
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 num_cpus=None if address else max(1, workers))
    try:
        remote = ray.remote(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0)(_ray_chunk)
        pending = [remote.remote(i, chunk, device) for i, chunk in enumerate(chunks)]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()


def _ray_chunk(index: int, specs: Sequence[RunSpec], device: str) -> tuple[int, list[RunResult]]:
    torch.set_num_threads(1)
    return index, compute_chunk(specs, device)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
