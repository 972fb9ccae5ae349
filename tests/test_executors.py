"""Executors: chunking, local processes, devices, Ray — the same study gives the same numbers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from helpers import alive as _alive
from helpers import real_data
import torch

from polarnet.cli import main
from polarnet.experiments import load_study, plan, run_study
from polarnet.experiments.executors import EXECUTORS, _ray_stream, compute_chunk, local, resolve_device
from polarnet.experiments.checkpoint import ensemble_checkpoint_file
from polarnet.experiments.trainer import checkpoint_file
from polarnet.experiments.sweep import make_chunks




def _table(folder):
    """Everything a sweep computed, keyed by run and epoch (wall times and timestamps left out)."""
    db = sqlite3.connect(folder / "results.sqlite")
    try:
        epochs = {(r[0], r[1]): r[2:] for r in db.execute(
            "SELECT run, epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes FROM epochs")}
        runs = {r[0]: r[1:] for r in db.execute(
            "SELECT key, status, reason, acc_before_align, acc_after_align, device FROM runs")}
    finally:
        db.close()
    return epochs, runs


# -- chunks ----------------------------------------------------------------------------------

def _check_chunks(runs, chunks, min_members=32):
    assert Counter(id(r) for c in chunks for r in c) == Counter(id(r) for r in runs)  # each run exactly once
    assert sum(len(c) for c in chunks) == len(runs)
    by_trial = {}
    for r in runs:
        by_trial.setdefault((r.hidden, r.trial), set()).add(id(r))
    for chunk in chunks:
        assert len({r.hidden for r in chunk}) == 1  # an ensemble has one shape
        if chunk[0].study.vectorize:  # whole trials: every condition and size of its trials
            trials = {r.trial for r in chunk}
            assert {id(r) for r in chunk} == set().union(*(by_trial[(chunk[0].hidden, t)] for t in trials))
        else:
            assert len(chunk) == 1
    if runs[0].study.vectorize:
        for hidden in {r.hidden for r in runs}:
            sizes = sorted(len(c) for c in chunks if c[0].hidden == hidden)
            group = sum(sizes)
            # at least min_members per chunk when the group allows it (the last one may be short)
            assert all(s >= min(min_members, group) for s in sizes[1:]) or len(sizes) == 1


@pytest.mark.parametrize(("source", "overrides", "workers", "expected"), [
    ("xor5d", [], 1, 1),  # 50 trials of 33 runs: one chunk per worker
    ("xor5d", [], 2, 2),
    ("xor5d", [], 8, 8),  # ceil(50 / 8) = 7 trials a chunk: 8 chunks
    ("xor5d-width", ["trials=6"], 2, 32),  # one chunk per hidden size
    ("xor5d", ["trials=10", "sizes=[8]"], 2, 1),  # 30 runs: below min_members, one chunk
    ("xor5d", ["trials=40", "sizes=[8]"], 2, 2),  # 3 runs a trial: 20 trials a chunk
    ("xor5d", ["trials=3", "sizes=[8, 40]", "vectorize=false"], 2, 18),  # one run a chunk
    ("xor5d-reset", ["trials=4", "sizes=[8, 100]", "hidden=[4, 8]"], 1, 2),  # 2 groups × 1 chunk of 72
])
def test_make_chunks_covers_every_run_once(source, overrides, workers, expected) -> None:
    runs = plan(load_study(source, overrides))
    chunks = make_chunks(runs, workers)
    _check_chunks(runs, chunks)
    assert len(chunks) == expected


_IMAGES = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
           "init_bias='zeros'", "batch_size=50", "lr=0.001", "resets=['posRand']"]


@pytest.mark.parametrize(("overrides", "workers", "sizes"), [
    # image runs: a chunk per worker of every cell (one training-set size)
    (["conditions=['frozen_rand', 'fluid_rand']", "trials=3", "sizes=[50, 100]"], 2, [4, 2, 4, 2]),  # whole trials
    (["conditions=['frozen_rand', 'fluid_rand']", "trials=3", "sizes=[50, 100]"], 1, [6, 6]),
    (["conditions=['frozen_rand', 'fluid_rand']", "trials=3", "sizes=[50]", "ensemble_members=4"], 1, [4, 2]),
    (["conditions=['frozen_rand']", "trials=2", "sizes=[50]", "vectorize=false"], 2, [1, 1]),
])
def test_make_chunks_groups_image_runs_by_cell(overrides, workers, sizes) -> None:
    runs = plan(load_study("xor5d", _IMAGES + overrides, validate=False))
    chunks = make_chunks(runs, workers)
    assert Counter(id(r) for c in chunks for r in c) == Counter(id(r) for r in runs)  # each run exactly once
    assert [len(c) for c in chunks] == sizes
    assert all(len({r.n_train for r in c}) == 1 for c in chunks)


@real_data
def test_an_image_study_runs_vectorised_through_the_engine_with_the_numbers_of_one_at_a_time(tmp_path,
                                                                                            monkeypatch) -> None:
    from polarnet.experiments import Store, executors

    ensembles = []
    real = executors.train_image_ensemble
    monkeypatch.setattr(executors, "train_image_ensemble", lambda specs, *a, **k: ensembles.append(len(specs))
                        or real(specs, *a, **k))

    overrides = _IMAGES + ["conditions=['frozen_rand', 'fluid_rand']", "trials=2", "sizes=[100]", "epochs=2",
                           "val_size=300"]
    tables = {}
    for vectorize in ("true", "false"):
        study = load_study("xor5d", overrides + [f"vectorize={vectorize}"])
        summary = run_study(study, tmp_path / vectorize, workers=1, device="cpu", progress=False)
        assert summary.trained == 4 and summary.failed == 0
        with Store(tmp_path / vectorize) as store:
            tables[vectorize] = store.epochs().sort_values(["run", "epoch"]).reset_index(drop=True)
        assert not (tmp_path / vectorize / "checkpoints").exists()  # the ensemble's file went with its runs
    assert ensembles == [4]  # one cell, one chunk with one worker; none for vectorize=false
    vec, one = tables["true"], tables["false"]
    assert list(vec["run"]) == list(one["run"]) and list(vec["resets"]) == list(one["resets"])
    for column in ("train_loss", "val_loss", "val_acc"):
        assert (vec[column] - one[column]).abs().max() <= 1e-5, column


def test_make_chunks_of_a_partial_todo_list() -> None:
    """A resumed sweep chunks only what is left: still every run once."""
    runs = plan(load_study("xor5d", ["trials=20", "sizes=[8, 40, 100]"]))
    todo = runs[5::3]
    chunks = make_chunks(todo, 2)
    assert Counter(id(r) for c in chunks for r in c) == Counter(id(r) for r in todo)


# -- local executor -----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    # 8 trials × 33 runs: 1 chunk with one worker, 2 with two (different ensembles, same numbers)
    ["trials=8", "epochs=2", "val_size=200"],
    ["trials=2", "epochs=3", "sizes=[8, 40]", "val_size=200", "vectorize=false"],
])
def test_two_local_workers_give_the_same_numbers_as_one(tmp_path, overrides) -> None:
    study = load_study("xor5d", overrides)
    runs = plan(study)
    assert len(make_chunks(runs, 2)) > 1  # the process pool is really used
    one = run_study(study, tmp_path / "one", workers=1, device="cpu", progress=False)
    two = run_study(study, tmp_path / "two", workers=2, device="cpu", progress=False)
    assert one.trained == two.trained == len(runs) and one.failed == two.failed == 0
    assert _table(tmp_path / "one") == _table(tmp_path / "two")


def test_compute_chunk_never_raises() -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]", "hidden=[4, 8]"]))
    results = compute_chunk(runs, "cpu")  # two hidden sizes cannot be one ensemble
    assert [r.key for r in results] == [r.key for r in runs]
    assert all(r.status == "failed" and "one hidden size" in r.reason for r in results)
    single = compute_chunk(runs[:1], "cpu")
    assert single[0].status == "done" and len(single[0].epochs) == 1


# -- devices ------------------------------------------------------------------------------------

def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    study = load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]"])
    with pytest.raises(ValueError, match="--device cuda"):
        run_study(study, tmp_path / "api", device="cuda", progress=False)
    assert not (tmp_path / "api" / "results.sqlite").exists()
    out = tmp_path / "cli"
    assert main(["run", "xor5d", "--out", str(out), "--device", "cuda", "--no-progress", "--set", "trials=1"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--device cpu" in err
    assert not (out / "results.sqlite").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_numbers(tmp_path) -> None:
    study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40]", "dtype='float64'"])
    run_study(study, tmp_path / "cpu", workers=1, device="cpu", progress=False)
    run_study(study, tmp_path / "cuda", workers=1, device="cuda", progress=False)
    (e_cpu, _), (e_gpu, r_gpu) = _table(tmp_path / "cpu"), _table(tmp_path / "cuda")
    assert e_cpu.keys() == e_gpu.keys()
    for key in e_cpu:
        a, b = e_cpu[key], e_gpu[key]
        assert a[:4] == pytest.approx(b[:4], abs=1e-6) and a[4] == b[4]
    assert {r[-1] for r in r_gpu.values()} == {"cuda"}


# -- executors registry and Ray ---------------------------------------------------------------------

def test_executor_registry_and_missing_ray(tmp_path, monkeypatch) -> None:
    assert {"local", "ray"} <= set(EXECUTORS.names())
    study = load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]"])
    with pytest.raises(ValueError, match="executor"):
        run_study(study, tmp_path / "x", executor="dask", progress=False)
    assert not (tmp_path / "x" / "results.sqlite").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(ValueError, match=r"polarnet\[ray\]"):
        run_study(study, tmp_path / "y", executor="ray", progress=False)


@pytest.mark.slow
def test_ray_gives_the_same_numbers_as_local(tmp_path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'polarnet[ray]')")
    study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40]", "hidden=[8, 12]", "val_size=200"])
    assert len(make_chunks(plan(study), 2)) == 2
    local = run_study(study, tmp_path / "local", workers=1, progress=False)
    assert not ray.is_initialized()
    remote = run_study(study, tmp_path / "ray", executor="ray", workers=2, device="cpu", progress=False)
    assert not ray.is_initialized()  # the executor shut down the instance it started
    assert remote.trained == local.trained == 24 and remote.failed == 0
    assert _table(tmp_path / "ray") == _table(tmp_path / "local")
    epochs, _ = _table(tmp_path / "ray")
    assert all(set(json.loads(row[-1])) == {"0.weight", "2.weight"} for row in epochs.values())


# -- stopping and dying (issue 8) -------------------------------------------------------------------

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to find worker processes")

# runs that take far longer than any test: a test stops them
ENDLESS = ["trials=4", "epochs=100000", "sizes=[500]", "val_size=100", "vectorize=false", "conditions=['fluid_rand']"]
TINY = ["trials=2", "epochs=3", "sizes=[8]", "val_size=100", "vectorize=false", "conditions=['frozen_rand']"]


def _children(pid: int) -> list[int]:
    """Live (not zombie) worker processes of ``pid`` (multiprocessing's resource tracker, also
    a child, is left out: it exits by itself when its parent does)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in command:
                found.append(int(entry))
    return found


def _gone_within(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


class _Stop(Exception):
    """Stands for the sweep's Interrupted: an exception raised in the driver while workers run."""


@linux_only
def test_closing_the_stream_stops_the_workers_at_once_and_quietly(capfd) -> None:
    """What the sweep does on Ctrl-C or SIGTERM (or when an exception is thrown into the stream)."""
    endless = plan(load_study("xor5d", ENDLESS))
    tiny = plan(load_study("xor5d", TINY))
    started: set[int] = set()
    stream = local([tiny[:1], endless[:1], endless[1:2]], "cpu", 2, None, lambda i, w: started.add(i))
    index, results = next(stream)
    assert index == 0 and results[0].status == "done"
    workers = _children(os.getpid())
    assert len(workers) == 2  # one in an endless run, one given the next endless chunk
    tick = time.monotonic()
    stream.close()
    assert time.monotonic() - tick < 3.0
    assert _gone_within(workers, 0.5) and _children(os.getpid()) == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@linux_only
def test_a_killed_worker_fails_its_runs_and_is_replaced(tmp_path) -> None:
    """An out-of-memory kill (SIGKILL) of a worker fails its chunk with the reason; the other
    chunks still run, on a fresh worker. Runs trained one at a time keep checkpoints."""
    endless = plan(load_study("xor5d", ENDLESS))
    tiny = plan(load_study("xor5d", TINY))
    started: set[int] = set()
    killed: list[int] = []

    def progress(index, work):
        started.add(index)
        if started >= {0, 1} and not killed:  # both workers are in an endless run
            killed.extend(_children(os.getpid()))
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    chunks = [endless[:1], endless[1:2], tiny]
    results = dict(local(chunks, "cpu", 2, None, progress, checkpoints=tmp_path))
    assert len(killed) == 2 and not any(_alive(p) for p in killed)
    for index in (0, 1):
        assert results[index][0].status == "failed"
        assert "worker process" in results[index][0].reason and "SIGKILL" in results[index][0].reason
    assert [r.status for r in results[2]] == ["done"] * len(tiny)
    for run in tiny:  # one at a time: each run checkpointed (never after its last epoch)
        assert torch.load(checkpoint_file(tmp_path, run.key), weights_only=True)["epoch"] in (1, 2)
    assert _children(os.getpid()) == []


def test_compute_chunk_checkpoints_single_runs_and_ensembles(tmp_path) -> None:
    runs = plan(load_study("xor5d", ["trials=1", "epochs=2", "sizes=[8, 40]", "val_size=100"]))
    assert all(r.status == "done" for r in compute_chunk(runs, "cpu", checkpoints=tmp_path / "ensemble"))
    saved = torch.load(ensemble_checkpoint_file(tmp_path / "ensemble", runs), weights_only=True)
    assert (saved["kind"], saved["epoch"]) == ("xor ensemble", 1)  # the first epoch, never the last
    done = compute_chunk(runs[:1], "cpu", checkpoints=tmp_path / "one")
    assert done[0].status == "done" and checkpoint_file(tmp_path / "one", runs[0].key).is_file()


_DRIVER = """
import os, sys, threading
from polarnet.experiments import load_study, plan
from polarnet.experiments.executors import local
runs = plan(load_study("xor5d", {endless!r}))
started = set()
def progress(index, work):
    started.add(index)
    if started == {{0, 1}}:
        print("busy", flush=True)
def drive():
    for _ in local([[r] for r in runs], "cpu", 2, None, progress):
        pass
if sys.argv[1] == "thread":
    threading.Thread(target=drive).start()
else:
    drive()
"""


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("driver", ["thread"])
def test_workers_die_with_a_killed_driver(driver) -> None:
    """kill -9 of the driver: no worker survives it (PR_SET_PDEATHSIG when the driver's main
    thread started them; a watchdog on the parent's pid when another thread did). The main
    thread's case is tests/test_interrupt.py's kill -9 of ``polarnet run``."""
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER.format(endless=ENDLESS), driver], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "busy\n", proc.stderr.read()
        workers = _children(proc.pid)
        assert len(workers) == 2
        proc.kill()
        proc.wait(10)
        assert _gone_within(workers, 5.0)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@linux_only
def test_a_worker_asks_the_kernel_to_kill_it_with_its_parent_and_sees_a_dead_parent() -> None:
    check = """
import ctypes, os, signal, sys
from polarnet.experiments.executors import _die_with_parent
_die_with_parent(os.getppid(), True)
libc = ctypes.CDLL(None, use_errno=True)
value = ctypes.c_int()
libc.prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
print(value.value == signal.SIGKILL)
_die_with_parent(1 if os.getppid() != 1 else 2, False)  # a parent that is already gone: exit at once
print("still here")
"""
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.stdout == "True\n" and done.returncode == 1, done.stderr


def test_closing_a_ray_stream_cancels_running_tasks_and_shuts_down_its_ray() -> None:
    calls = []

    class FakeRay:
        initialized = False

        def is_initialized(self):
            return self.initialized

        def init(self, **kwargs):
            self.initialized = True

        def remote(self, **resources):
            return lambda f: SimpleNamespace(remote=lambda *args: calls.append(("submit", args[0], args[3])) or ("ref", args))

        def wait(self, pending, num_returns):
            return pending[:1], pending[1:]

        def get(self, ref):
            return ref[1][0], []

        def cancel(self, ref, force):
            calls.append(("cancel", ref[1][0], force))

        def shutdown(self):
            calls.append(("shutdown",))

    stream = _ray_stream(FakeRay(), [["a"], ["b"], ["c"]], "cpu", 2, None, checkpoints="/shared/ck")
    assert next(stream) == (0, [])
    stream.close()
    assert calls == [("submit", i, "/shared/ck") for i in range(3)] + [("cancel", 1, True), ("cancel", 2, True),
                                                                        ("shutdown",)]
    calls.clear()
    ray = FakeRay()
    ray.initialized = True  # someone else's Ray: left running
    assert list(_ray_stream(ray, [["a"]], "cpu", 1, None)) == [(0, [])]
    assert calls == [("submit", 0, None)]


def test_ray_init_cannot_replace_the_sweeps_signal_handlers() -> None:
    import signal

    from polarnet.experiments.executors import _keep_signal_handlers

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _keep_signal_handlers():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what ray.init does to a driver
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_while_a_worker_starts_is_handled_after_the_start() -> None:
    import signal

    from polarnet.experiments.executors import _signals_held

    seen = []

    def mine(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes at which Python would run a handler
                pass
            assert seen == []
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- engine fallback -------------------------------------------------------------------------------

class _SameConv(torch.nn.Conv2d):
    """A convolution that pads "same" itself and reads its own weight in ``forward``, as
    EfficientNet ports do: torch.fx traces its ``self.weight`` as a get_attr."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel_size[0] // 2
        return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (pad,) * 4), self.weight, self.bias, self.stride)


@pytest.fixture
def same_conv_net():
    from polarnet.models import MODELS, register_model

    @register_model("test_same_conv_net")
    def factory(num_classes: int = 10, in_channels: int = 1) -> torch.nn.Module:
        return torch.nn.Sequential(_SameConv(in_channels, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.Linear(4 * 14 * 14, num_classes))

    yield "test_same_conv_net"
    MODELS.unregister("test_same_conv_net")


def test_a_model_the_stacked_engine_refuses_trains_one_at_a_time_under_the_defaults(tmp_path, same_conv_net,
                                                                                     fake_fashion, capsys) -> None:
    """The issue's study: a factory whose conv calls F.conv2d(x, self.weight) itself, 4 runs, the
    default vectorize = true: every run is done, recorded as trained one at a time, and one line
    says so and why."""
    from polarnet.experiments import Store

    study = load_study("xor5d", _IMAGES + [f"model='{same_conv_net}'", f"data_root='{fake_fashion}'", "trials=2",
                                           "sizes=[50]", "epochs=1", "val_size=40",
                                           "conditions=['frozen_rand', 'fluid_rand']"])
    assert study.vectorize
    summary = run_study(study, tmp_path / "out", workers=1, device="cpu", progress=False)
    assert summary.trained == 4 and summary.failed == 0
    with Store.existing(tmp_path / "out") as store:
        runs = store.runs()
    assert list(runs["status"]) == ["done"] * 4 and list(runs["engine"]) == ["single"] * 4
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("engine:")]
    assert lines == ["engine: 4 runs one at a time — the model's forward reads 0.weight directly, which the stacked "
                     "engine can't trace"]


class _LenNet(torch.nn.Module):
    """torch.fx can't trace ``len`` of a proxy: the model runs whole under vmap."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 4, 5, stride=3)
        self.fc = torch.nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).reshape(len(x), -1))


def test_the_engine_is_chosen_per_model_once(same_conv_net, monkeypatch) -> None:
    """LeNet stacks layer by layer, an untraceable model runs under vmap, the issue's model
    trains one at a time with the reason; the probe runs once per architecture."""
    from polarnet.experiments import engines
    from polarnet.models import MODELS, register_model

    register_model("test_len_net_engine")(_LenNet)
    probes = []
    real = engines._probe
    monkeypatch.setattr(engines, "_probe", lambda spec, device: probes.append(spec.study.model) or real(spec, device))
    monkeypatch.setattr(engines, "_PROBED", {})
    try:
        def runs(model, *extra):
            return plan(load_study("xor5d", _IMAGES + [f"model='{model}'", "trials=2", "sizes=[50, 100]",
                                                       "conditions=['frozen_rand', 'fluid_rand']", *extra]))

        lenet, untraceable, same = runs("lenet"), runs("test_len_net_engine"), runs(same_conv_net)
        assert engines.chunk_engine(lenet) == ("stacked", "")
        assert engines.chunk_engine(untraceable) == ("vmap", "torch.fx can't trace the model's forward")
        assert engines.chunk_engine(same) == ("single", "the model's forward reads 0.weight directly, which the "
                                                        "stacked engine can't trace")
        assert engines.chunk_engine(same[4:]) == engines.chunk_engine(same)  # another cell: no second probe
        assert probes == ["lenet", "test_len_net_engine", same_conv_net]
        assert engines.chunk_engine(runs(same_conv_net, "vectorize=false")) == ("single", "")
        assert engines.engine_line([lenet[:4], same[:4], same[4:6], same[6:]]) == (
            "engine: 4 runs in stacked ensembles, 8 runs one at a time — the model's forward reads 0.weight "
            "directly, which the stacked engine can't trace")
    finally:
        MODELS.unregister("test_len_net_engine")


def test_an_image_ensemble_that_fails_past_the_probe_trains_its_runs_one_at_a_time(fake_fashion, monkeypatch) -> None:
    """No run fails because of the engine: an ensemble raising after the probe passed (memory, a
    tied weight) leaves its runs to train_run, with a warning."""
    from polarnet.experiments import executors

    def refuse(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(executors, "train_image_ensemble", refuse)
    runs = plan(load_study("xor5d", _IMAGES + [f"data_root='{fake_fashion}'", "trials=1", "sizes=[50]", "epochs=1",
                                               "val_size=40", "conditions=['frozen_rand', 'fluid_rand']"]))
    with pytest.warns(RuntimeWarning, match=r"image ensemble failed \(RuntimeError: out of memory\); its 2 runs"):
        results = compute_chunk(runs, "cpu")
    assert [(r.key, r.status, r.engine) for r in results] == [(r.key, "done", "single") for r in runs]
