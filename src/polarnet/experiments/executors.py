"""Where chunks of runs are computed: this machine's cores, or a Ray cluster.

Workers only compute; results come back to the driver, which alone writes the store. A
chunk that raises becomes failed runs carrying the error, and the sweep goes on.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

import torch

from ..registry import Registry
from .ensemble import supports, train_ensemble
from .plan import RunSpec
from .results import RunResult
from .trainer import train_run

__all__ = ["EXECUTORS", "compute_chunk", "resolve_device"]

Executor = Callable[[Sequence[Sequence[RunSpec]], str, int, "str | None"], Iterator[list[RunResult]]]
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


def compute_chunk(specs: Sequence[RunSpec], device: str) -> list[RunResult]:
    """Train a chunk (an ensemble when possible, else one run at a time); never raises."""
    try:
        if len(specs) > 1 and specs[0].study.vectorize and supports(specs[0]):
            return train_ensemble(specs, device)
        return [_one(spec, device) for spec in specs]
    except Exception as e:  # a failing chunk must not take the sweep down
        reason = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        return [RunResult(s.key, "failed", reason=reason, device=device) for s in specs]


def _one(spec: RunSpec, device: str) -> RunResult:
    try:
        return train_run(spec, device)
    except Exception as e:
        return RunResult(spec.key, "failed", reason=f"{type(e).__name__}: {e}", device=device)


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


@EXECUTORS.register("local")
def local(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None) -> Iterator[list[RunResult]]:
    """This machine: ``workers`` processes of one thread each (in-process when 1 or on CUDA)."""
    if workers <= 1 or device != "cpu" or len(chunks) == 1:
        for chunk in chunks:
            yield compute_chunk(chunk, device)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(1,)) as pool:
        pending = {pool.submit(compute_chunk, chunk, device) for chunk in chunks}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()


@EXECUTORS.register("ray")
def ray_executor(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None) -> Iterator[list[RunResult]]:
    """A Ray cluster (``address``) or a local Ray instance; needs ``pip install polarnet[ray]``.

    Checks that Ray can be imported when called, before the sweep writes anything.
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
        pending = [remote.remote(chunk, device) for chunk in chunks]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()


def _ray_chunk(specs: Sequence[RunSpec], device: str) -> list[RunResult]:
    torch.set_num_threads(1)
    return compute_chunk(specs, device)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
