"""Where chunks of runs are computed: this machine's cores, or a Ray cluster.

Workers only compute; results come back to the driver, which alone writes the store. A
chunk that raises becomes failed runs carrying the error, and the sweep goes on.

An executor is ``executor(chunks, device, workers, address, progress, checkpoints=None)`` and
returns an iterator of ``(chunk index, results)`` as chunks finish; where it can, it also calls
``progress(chunk index, runs' worth of work)`` as epochs finish, in the driver process.
``checkpoints`` is a folder where runs trained one at a time keep a checkpoint per run (see
:func:`~polarnet.experiments.trainer.train_run`), so an interrupted run resumes at its last
finished epoch.

Stopping: closing the iterator (``.close()``, or an exception thrown into it, such as the
sweep's ``Interrupted`` on SIGINT/SIGTERM) stops every worker at once, without waiting for the
chunks they are computing, and prints nothing. Worker processes ignore SIGINT (the driver
decides what a Ctrl-C means) and die with the driver, even when it is killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from .. import native
from ..registry import Registry
from .engines import chunk_engine
from .ensemble import supports, train_ensemble
from .image_ensemble import ensemble_checkpoint_file, train_image_ensemble
from .plan import RunSpec
from .results import RunResult
from .trainer import checkpoint_file, train_run

__all__ = ["EXECUTORS", "compute_chunk", "resolve_device", "default_workers"]

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


def compute_chunk(specs: Sequence[RunSpec], device: str, on_epoch: Callable[[float], None] | None = None,
                  checkpoints: Path | None = None) -> list[RunResult]:
    """Train a chunk (an ensemble when possible, else one run at a time); never raises an ``Exception``.

    The engine is :func:`~polarnet.experiments.engines.chunk_engine`'s: an image model the
    ensemble refuses trains one run at a time, as does a chunk whose image ensemble fails for
    any other reason (with a warning), so no run fails because of the engine. Each result's
    ``engine`` says which one trained it.

    ``on_epoch(runs)`` is told after every epoch how many runs' worth of work it finished. With
    ``checkpoints`` (a folder), runs trained one at a time keep ``checkpoints/<run key>.pt`` up to
    date and resume from it (see :func:`~polarnet.experiments.trainer.train_run`), and so do
    image and XOR ensembles, in ``checkpoints/ensemble-<hash of their keys>.pt``.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "vectorize=false"]))
        >>> [r.status for r in compute_chunk(runs[:2], "cpu")]
        ['done', 'done']
    """
    try:
        engine = chunk_engine(specs, device)
        path = ensemble_checkpoint_file(checkpoints, specs) if checkpoints is not None else None
        if engine.name == "stacked" and supports(specs[0]):
            return _as(train_ensemble(specs, device, on_epoch=on_epoch, checkpoint=path), "stacked")
        if engine.name != "single":
            try:
                return _as(train_image_ensemble(specs, device, on_epoch=on_epoch, checkpoint=path,
                                                max_members=specs[0].study.ensemble_members or None), engine.name)
            except Exception as e:  # refused past the probe (a tied weight, memory): one at a time, not failed runs
                warnings.warn(f"the image ensemble failed ({type(e).__name__}: {e}); its {len(specs)} runs train one "
                              f"at a time", RuntimeWarning, stacklevel=2)
        return [_one(spec, device, on_epoch, checkpoints) for spec in specs]
    except Exception as e:  # a failing chunk must not take the sweep down
        reason = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        return [RunResult(s.key, "failed", reason=reason, device=device) for s in specs]


def _as(results: list[RunResult], engine: str) -> list[RunResult]:
    for r in results:
        r.engine = engine
    return results


def _one(spec: RunSpec, device: str, on_epoch: Callable[[float], None] | None, checkpoints: Path | None) -> RunResult:
    try:
        path = checkpoint_file(checkpoints, spec.key) if checkpoints is not None else None
        return train_run(spec, device, on_epoch=on_epoch, checkpoint=path)
    except Exception as e:
        return RunResult(spec.key, "failed", reason=f"{type(e).__name__}: {e}", device=device)


def _failed(specs: Sequence[RunSpec], device: str, reason: str) -> list[RunResult]:
    return [RunResult(s.key, "failed", reason=reason, device=device) for s in specs]


# -- local worker processes -----------------------------------------------------------------------

def _die_with_parent(parent: int, tied_to_thread: bool) -> None:
    """Make this worker die when the driver ``parent`` does, however it dies (even SIGKILL).

    On Linux the kernel sends SIGKILL when the parent exits (``PR_SET_PDEATHSIG``). That fires
    when the *thread* that started this process exits, so it is only set when that thread was
    the driver's main thread (``tied_to_thread``). A daemon thread watching the parent's pid
    covers the rest, and other systems. This runs once the worker has imported polarnet (and
    torch): a driver killed while its workers are still starting up is noticed here, and the
    worker exits at once.
    """
    if tied_to_thread and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # no prctl here: the watchdog alone
            pass
    if os.getppid() != parent:  # the parent died before the line above: nobody will tell us
        os._exit(1)

    def watchdog() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watchdog, name="polarnet-parent-watchdog", daemon=True).start()


def _worker_main(conn: Connection, parent: int, tied_to_thread: bool, threads: int) -> None:
    """A worker: compute the chunks the driver sends until it sends ``None`` or goes away.

    Sends ``("progress", runs)`` as epochs finish and ``("done", results)`` per chunk. The
    driver started this process with SIGINT and SIGTERM blocked; SIGINT is ignored here before
    both are unblocked (SIGTERM's default, a silent death, is what the driver's stop wants), so
    a signal at any moment never prints a traceback from a worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _die_with_parent(parent, tied_to_thread)
    torch.set_num_threads(threads)

    def report(runs: float) -> None:
        try:
            conn.send(("progress", runs))
        except (OSError, EOFError):  # the driver is gone: stop now, not after the chunk
            os._exit(0)

    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            specs, device, checkpoints = task
            results = compute_chunk(specs, device, report, checkpoints)
            try:
                conn.send(("done", results))
            except (OSError, EOFError):  # the driver is gone: handled below
                raise
            except Exception as e:  # e.g. a result that can't be pickled (nothing was sent)
                conn.send(("done", _failed(specs, device, f"result could not be sent back: {type(e).__name__}: {e}")))
    except (OSError, EOFError):  # the driver is gone (or closed our pipe): nothing left to do
        os._exit(0)


class _Worker:
    """A worker process, its end of the pipe, and the chunk it is computing."""

    def __init__(self, context, threads: int) -> None:
        here, there = context.Pipe()
        tied = threading.current_thread() is threading.main_thread()
        self.process = context.Process(target=_worker_main, args=(there, os.getpid(), tied, threads),
                                       name="polarnet-worker", daemon=True)
        self.conn = here
        self.chunk: int | None = None
        try:
            with _signals_held():
                self.process.start()
        finally:
            there.close()  # only the child holds it now: its death shows as EOF here

    def give(self, index: int, chunk: Sequence[RunSpec], device: str, checkpoints: Path | None) -> None:
        self.chunk = index
        self.conn.send((chunk, device, checkpoints))

    def exit_reason(self) -> str:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
            if -code == signal.SIGKILL:
                how += " (out of memory?)"
        else:
            how = f"exit code {code}"
        return f"the worker process computing this run died ({how})"


@contextmanager
def _signals_held() -> Iterator[None]:
    """Start a worker without a signal cutting in: a SIGINT/SIGTERM that arrives meanwhile is
    handled once the child has all its start-up data (cut in between, the child dies on a
    truncated pipe with a traceback).

    Two layers, because either alone leaves a gap: the signals are blocked in this thread (the
    child inherits the mask, and SIGINT stays blocked there until the worker ignores it), and
    the Python handlers are swapped for one that only remembers, since the kernel may deliver
    the signal to another thread of this process and Python then runs the handler here, at any
    bytecode of ``Process.start``.
    """
    main = threading.current_thread() is threading.main_thread()
    caught: list[int] = []
    saved = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
             for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) \
        if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a blocked signal runs `caught` now
        for signum, handler in saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if caught:
            handler = saved[caught[0]]
            if callable(handler):
                handler(caught[0], None)  # e.g. the sweep's: raises Interrupted
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def _stop(workers: list[_Worker], clean: bool) -> None:
    """End every worker: asked politely after a clean finish, else terminated at once."""
    for w in workers:
        if clean and w.process.is_alive():
            try:
                w.conn.send(None)
            except (OSError, EOFError):
                pass
        elif w.process.is_alive():
            w.process.terminate()  # SIGTERM: a worker's default action is to die, silently
    deadline = time.monotonic() + (10.0 if clean else 1.0)
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join(1.0)
        w.conn.close()


@EXECUTORS.register("local")
def local(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None,
          progress: Progress | None = None, checkpoints: Path | None = None) -> Iterator[tuple[int, list[RunResult]]]:
    """This machine: ``workers`` processes of one thread each (in-process when 1 or on CUDA).

    Chunks go to idle workers in order. A worker that dies (killed, out of memory) fails its
    chunk's runs with the reason and is replaced. Closing the iterator terminates the workers.
    """
    if workers <= 1 or device != "cpu" or len(chunks) == 1:
        for index, chunk in enumerate(chunks):
            on_epoch = partial(progress, index) if progress is not None else None
            yield index, compute_chunk(chunk, device, on_epoch, checkpoints)
        return
    native.library()  # built, or found missing and said so, once: the workers inherit both
    context = get_context("spawn")
    todo = list(enumerate(chunks))[::-1]  # popped from the end: in order
    pool: list[_Worker] = []
    clean = False
    try:
        for _ in range(min(workers, len(chunks))):
            worker = _Worker(context, threads=1)
            pool.append(worker)
            index, chunk = todo.pop()
            worker.give(index, chunk, device, checkpoints)
        while any(w.chunk is not None for w in pool):
            busy = {w.conn: w for w in pool if w.chunk is not None}
            for conn in wait(list(busy)):
                worker = busy[conn]
                index = worker.chunk
                assert index is not None
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):  # the process died: fail its chunk, replace it
                    results = _failed(chunks[index], device, worker.exit_reason())
                    worker.conn.close()
                    pool.remove(worker)
                    worker = _Worker(context, threads=1) if todo else None
                    if worker is not None:
                        pool.append(worker)
                except Exception as e:  # a message that can't be unpickled here; the worker goes on
                    results = _failed(chunks[index], device, f"the result could not be read: {type(e).__name__}: {e}")
                    worker.chunk = None
                else:
                    if kind == "progress":
                        if progress is not None:
                            progress(index, payload)
                        continue
                    results = payload
                    worker.chunk = None
                if worker is not None and todo:
                    worker.give(*todo.pop(), device, checkpoints)
                yield index, results
        clean = True
    finally:
        _stop(pool, clean)


# -- Ray ------------------------------------------------------------------------------------------

@EXECUTORS.register("ray")
def ray_executor(chunks: Sequence[Sequence[RunSpec]], device: str, workers: int, address: str | None = None,
                 progress: Progress | None = None, checkpoints: Path | None = None) -> Iterator[tuple[int, list[RunResult]]]:
    """A Ray cluster (``address``) or a local Ray instance; needs ``pip install polarnet[ray]``.

    Checks that Ray can be imported when called, before the sweep writes anything. Progress
    is reported per finished chunk. ``checkpoints`` is passed to the workers as it is: on a
    cluster it must be a folder every node sees at that path (a shared filesystem), or runs
    simply start from scratch on another node. Closing the iterator cancels the tasks still
    running (``ray.cancel(force=True)``) and shuts down a Ray instance started here.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install 'polarnet[ray]'") from None
    return _ray_stream(ray, chunks, device, workers, address, checkpoints)


@contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Undo the handlers ``ray.init`` installs: its SIGTERM handler exits the driver at once,
    which would skip the sweep's clean stop (finished runs kept, one line, exit 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _ray_stream(ray, chunks, device, workers, address, checkpoints=None):
    started_here = not ray.is_initialized()
    if started_here:
        with _keep_signal_handlers():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     num_cpus=None if address else max(1, workers))
    pending = []
    try:
        remote = ray.remote(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0)(_ray_chunk)
        pending = [remote.remote(i, chunk, device, checkpoints) for i, chunk in enumerate(chunks)]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        for ref in pending:  # left early: stop what is still running
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone
                pass
        if started_here:
            ray.shutdown()


def _ray_chunk(index: int, specs: Sequence[RunSpec], device: str, checkpoints: Path | None = None) -> tuple[int, list[RunResult]]:
    torch.set_num_threads(1)
    return index, compute_chunk(specs, device, checkpoints=checkpoints)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
