"""Executors: chunking, local processes, devices, Ray — the same study gives the same numbers."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter

import pytest
import torch

from polarnet.cli import main
from polarnet.experiments import load_study, plan, run_study
from polarnet.experiments.executors import EXECUTORS, compute_chunk, resolve_device
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
