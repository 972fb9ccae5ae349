"""Sweeps: the store, resuming (also after kill -9), failing runs, bad configurations."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from helpers import real_data
from polarnet.cli import main
from polarnet.experiments import Interrupted, Store, StoreError, StudyMismatch, load_study, plan, run_study
from polarnet.experiments import executors

TINY = ["trials=2", "epochs=3", "sizes=[8, 40]", "val_size=200"]




def _db(folder):
    db = sqlite3.connect(folder / "results.sqlite", timeout=30)
    db.execute("PRAGMA foreign_keys=ON")
    return db


def _epochs(folder):
    """{(run, epoch): row} without the wall time; sign changes decoded."""
    with _db(folder) as db:
        rows = db.execute("SELECT run, epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes FROM epochs").fetchall()
    return {(r[0], r[1]): r[2:7] + (json.loads(r[7]),) for r in rows}


def _runs(folder):
    with _db(folder) as db:
        return {r[0]: r[1:] for r in db.execute("SELECT key, status, acc_before_align, acc_after_align FROM runs")}


def _close(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    return math.isclose(a, b, rel_tol=0, abs_tol=tol)


def _assert_same_results(folder, reference, tol: float) -> None:
    got, want = _epochs(folder), _epochs(reference)
    assert got.keys() == want.keys()
    for key in want:
        assert all(_close(x, y, tol) for x, y in zip(got[key], want[key])), (key, got[key], want[key])
    got_runs, want_runs = _runs(folder), _runs(reference)
    assert got_runs.keys() == want_runs.keys()
    for key in want_runs:
        assert got_runs[key][0] == want_runs[key][0]
        assert all(_close(x, y, tol) for x, y in zip(got_runs[key][1:], want_runs[key][1:])), key


def _check_store_invariants(folder, study) -> dict[str, int]:
    """No duplicate runs; a finished run has all its epochs, an unfinished one none. Returns status counts."""
    with _db(folder) as db:
        rows = db.execute("""SELECT r.key, r.status, r.condition, r.n_train, r.hidden, r.reset, r.trial,
                             (SELECT COUNT(*) FROM epochs e WHERE e.run = r.key),
                             (SELECT MAX(epoch) FROM epochs e WHERE e.run = r.key) FROM runs r""").fetchall()
    points = [r[2:7] for r in rows]
    assert len(points) == len(set(points)), "a grid point appears twice"
    assert {r[0] for r in rows} <= {s.key for s in plan(study)}
    counts: dict[str, int] = {}
    for key, status, *_point, n_epochs, last in rows:
        counts[status] = counts.get(status, 0) + 1
        if status == "done":
            assert n_epochs == study.epochs and last == study.epochs, f"run {key} is done with {n_epochs} epochs"
        elif status == "running":
            assert n_epochs == 0, f"unfinished run {key} has {n_epochs} epochs"
    return counts


def test_run_study_fills_the_store_and_a_second_call_skips_everything(tmp_path) -> None:
    study = load_study("xor5d", TINY)
    first = run_study(study, tmp_path, workers=1, progress=False)
    assert (first.total, first.trained, first.skipped, first.failed) == (12, 12, 0, 0)
    with Store(tmp_path) as store:
        runs, epochs = store.runs(), store.epochs()
        assert store.counts() == {"done": 12}
        assert store.study()["settings"]["trials"] == 2
    assert set(runs["key"]) == {r.key for r in plan(study)}
    assert len(epochs) == 12 * 3
    versions = json.loads(runs["versions"].iloc[0])
    assert {"polarnet", "torch", "python"} <= set(versions)
    from polarnet import native  # which C kernels trained the runs, as this process has them

    assert versions["kernels"] == native.status() and not versions["kernels"].startswith("not built")
    assert runs["host"].notna().all() and (runs["finished"] >= runs["started"]).all()
    assert (json.loads(runs["settings"].iloc[0])["study"]["epochs"]) == 3
    assert _check_store_invariants(tmp_path, study) == {"done": 12}

    before = _epochs(tmp_path)
    second = run_study(study, tmp_path, workers=1, progress=False)
    assert (second.total, second.trained, second.skipped, second.failed) == (12, 0, 12, 0)
    assert _epochs(tmp_path) == before
    # a study that grows reuses what it has: only the new size is trained
    bigger = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8, 40, 60]", "val_size=200"])
    third = run_study(bigger, tmp_path, workers=1, progress=False)
    assert (third.total, third.trained, third.skipped) == (18, 6, 12)
    # … and the runs it kept are those a fresh sweep of the bigger study computes (nested data)
    run_study(bigger, tmp_path / "fresh", workers=1, progress=False)
    _assert_same_results(tmp_path, tmp_path / "fresh", 1e-6)


@pytest.mark.parametrize("vectorize", [True, False])
def test_resume_retrains_exactly_the_missing_and_interrupted_runs(tmp_path, monkeypatch, vectorize) -> None:
    study = load_study("xor5d", TINY + ["hidden=[8, 12]", f"vectorize={str(vectorize).lower()}"])
    run_study(study, tmp_path / "reference", workers=1, progress=False)
    folder = tmp_path / "resumed"
    run_study(study, folder, workers=1, progress=False)
    keys = sorted(r.key for r in plan(study))
    rng = random.Random(1)
    deleted = set(rng.sample(keys, 3))
    interrupted = set(rng.sample(sorted(set(keys) - deleted), 4))
    with _db(folder) as db:
        db.executemany("DELETE FROM runs WHERE key = ?", [(k,) for k in deleted])
        db.executemany("UPDATE runs SET status = 'running' WHERE key = ?", [(k,) for k in interrupted])
        # an interrupted run may also have lost its epochs: resuming must not care
        db.execute("DELETE FROM epochs WHERE run = ?", (sorted(interrupted)[0],))
        finished_before = dict(db.execute("SELECT key, finished FROM runs WHERE status = 'done'").fetchall())
    assert not any(run for run, _ in _epochs(folder) if run in deleted)  # the epochs went with the runs

    trained = []
    real = executors.compute_chunk
    monkeypatch.setattr(executors, "compute_chunk", lambda specs, device, *rest: trained.extend(s.key for s in specs) or real(specs, device, *rest))
    summary = run_study(study, folder, workers=1, progress=False)
    assert sorted(trained) == sorted(deleted | interrupted)
    assert (summary.trained, summary.skipped, summary.failed) == (7, len(keys) - 7, 0)
    with _db(folder) as db:
        finished_after = dict(db.execute("SELECT key, finished FROM runs").fetchall())
    assert all(finished_after[k] == v for k, v in finished_before.items())  # the others were left alone
    assert _check_store_invariants(folder, study) == {"done": len(keys)}
    _assert_same_results(folder, tmp_path / "reference", 1e-6)


def _exploding_study(tmp_path, vectorize: bool):
    path = tmp_path / "exploding.toml"
    path.write_text(f"""
conditions = ["fluid_rand", "exploding"]
sizes = [8, 40]
trials = 2
epochs = 4
val_size = 200
vectorize = {str(vectorize).lower()}
allow_extreme = true  # lr = 1e30 is the point: losses that become NaN

[define_condition.exploding]
polarity = "random"
frozen = false
lr = 1e30
""")
    return load_study(path)


@pytest.mark.parametrize("vectorize", [True, False])
def test_nan_runs_are_recorded_failed_and_the_sweep_goes_on(tmp_path, vectorize) -> None:
    study = _exploding_study(tmp_path, vectorize)
    summary = run_study(study, tmp_path / "out", workers=1, progress=False)
    assert (summary.total, summary.trained, summary.failed) == (8, 8, 4)
    with Store(tmp_path / "out") as store:
        runs = store.runs()
        epochs = store.epochs()
    failed = runs[runs["condition"] == "exploding"]
    assert (failed["status"] == "failed").all()
    assert failed["reason"].str.contains("non-finite loss").all()
    done = runs[runs["condition"] == "fluid_rand"]
    assert (done["status"] == "done").all() and done["reason"].isna().all()
    assert (epochs[epochs["condition"] == "fluid_rand"].groupby("run").size() == 4).all()
    # the failing epoch is kept, its non-finite numbers stored as NULL
    bad = epochs[epochs["condition"] == "exploding"]
    assert len(bad) > 0 and bad[["train_loss", "val_loss"]].isna().any(axis=1).any()


def test_a_chunk_that_raises_becomes_failed_runs(tmp_path, monkeypatch) -> None:
    study = load_study("xor5d", TINY + ["hidden=[8, 12]"])
    real = executors.train_ensemble

    def flaky(specs, *args, **kwargs):
        if specs[0].hidden == 12:
            raise RuntimeError("boom in the ensemble")
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(executors, "train_ensemble", flaky)
    summary = run_study(study, tmp_path, workers=1, progress=False)
    assert (summary.trained, summary.failed) == (24, 12)
    with Store(tmp_path) as store:
        runs = store.runs()
    broken, fine = runs[runs["hidden"] == 12], runs[runs["hidden"] == 8]
    assert (broken["status"] == "failed").all()
    assert broken["reason"].str.contains("RuntimeError: boom in the ensemble").all()
    assert (fine["status"] == "done").all()
    assert _check_store_invariants(tmp_path, study) == {"done": 12, "failed": 12}


def test_a_run_that_raises_fails_alone(tmp_path, monkeypatch) -> None:
    study = load_study("xor5d", TINY + ["vectorize=false"])
    victim = plan(study)[4].key
    real = executors.train_run

    def flaky(spec, *args, **kwargs):
        if spec.key == victim:
            raise RuntimeError("boom in one run")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(executors, "train_run", flaky)
    summary = run_study(study, tmp_path, workers=1, progress=False)
    assert (summary.trained, summary.failed) == (12, 1)
    runs = _runs(tmp_path)
    assert runs[victim][0] == "failed"
    assert all(status == "done" for key, (status, *_r) in runs.items() if key != victim)
    with _db(tmp_path) as db:
        reason, = db.execute("SELECT reason FROM runs WHERE key = ?", (victim,)).fetchone()
    assert "RuntimeError: boom in one run" in reason


@pytest.mark.parametrize(("override", "names"), [
    ("trials=-1", ["trials=-1", ">= 1"]),
    ("trails=3", ["trails", "trials"]),  # unknown key: named, with the allowed ones
    ("resets=['posRandom']", ["posRandom", "posRand", "flip"]),
    ("epochs=ten", ["epochs", "int"]),
    ("conditions=['frozen_sufficent']", ["frozen_sufficent", "frozen_sufficient"]),
])
def test_bad_config_is_rejected_before_any_run(tmp_path, capsys, override, names) -> None:
    out = tmp_path / "out"
    assert main(["run", "xor5d", "--out", str(out), "--no-progress", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polarnet: error:") and "Traceback" not in err
    for name in names:
        assert name in err
    assert not (out / "results.sqlite").exists()


def test_bad_condition_in_a_study_file_is_rejected(tmp_path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('conditions = ["mine"]\n[define_condition.mine]\npolarity = "randm"\nfrozen = true\n')
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "define_condition.mine.polarity='randm'" in err and "random" in err
    path.write_text('conditions = ["mine"]\n[define_condition.mine]\npolarity = "random"\nfrozn = true\n')
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "frozn" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.sqlite").exists()


@pytest.mark.parametrize("table", [
    'polarity = "rule"\nrule = "no_such_rule"',
    'polarity = "rule"',
    'polarity = "proportions"',
])
def test_condition_that_cannot_run_is_rejected_before_any_run(tmp_path, capsys, table) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'conditions = ["mine"]\nsizes = [8]\ntrials = 1\nepochs = 1\nproportions = "{tmp_path / "missing.json"}"\n'
                    f"[define_condition.mine]\nfrozen = true\n{table}\n")
    out = tmp_path / "out"
    rc = main(["run", str(path), "--out", str(out), "--no-progress", "--workers", "1"])
    db = out / "results.sqlite"
    n_runs = sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] if db.exists() else 0
    assert rc == 2 and n_runs == 0


KILL_STUDY = """
conditions = ["frozen_sufficient", "frozen_rand", "fluid_rand"]
sizes = [8, 40]
trials = 6
epochs = 40
val_size = 200
vectorize = false
"""


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_sweep(tmp_path) -> None:
    path = tmp_path / "kill.toml"
    path.write_text(KILL_STUDY)
    study = load_study(path)
    total = len(plan(study))
    folder = tmp_path / "killed"
    command = [sys.executable, "-m", "polarnet.cli", "run", str(path), "--out", str(folder), "--no-progress",
               "--workers", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    threshold = rng.randint(2, total - 12)
    where = f"(kill seed {seed}, threshold {threshold})"

    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.03)
            if not (folder / "results.sqlite").exists():
                continue
            try:
                with sqlite3.connect(folder / "results.sqlite", timeout=5) as db:
                    done = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
            except sqlite3.OperationalError:  # schema not created yet
                continue
            if done >= threshold:
                time.sleep(rng.uniform(0, 0.1))
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the sweep ended before it was killed {where}: {err.decode()[-2000:]}"

    # right after the kill: finished runs are complete, nothing partial looks finished
    counts = _check_store_invariants(folder, study)
    assert threshold <= counts.get("done", 0) < total, (counts, where)
    assert counts.get("running", 0) == total - counts["done"] and set(counts) <= {"done", "running"}, where
    done_before = counts["done"]

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{total - done_before} runs trained, {done_before} already done in" in resumed.stdout, where
    assert _check_store_invariants(folder, study) == {"done": total}, where

    run_study(study, tmp_path / "uninterrupted", workers=1, progress=False)
    _assert_same_results(folder, tmp_path / "uninterrupted", 1e-6)


# --------------------------------------------------------------------------- one study per folder

def test_a_rerun_with_other_settings_is_refused_and_names_what_differs(tmp_path, capsys) -> None:
    folder = tmp_path / "xor5d"
    run_study(load_study("xor5d", TINY), folder, workers=1, progress=False)
    before = _epochs(folder)
    with pytest.raises(StudyMismatch, match="epochs: 3 in the folder, 5 here"):
        run_study(load_study("xor5d", TINY + ["epochs=5"]), folder, workers=1, progress=False)
    cli = ["run", "xor5d", "--out", str(folder), "--workers", "1", "--no-progress",
           *[a for o in TINY for a in ("--set", o)], "--set", "epochs=5"]
    assert main(cli) == 2
    err = capsys.readouterr().err
    assert "holds another study" in err and f"--out {tmp_path / 'xor5d-2'}" in err and "Traceback" not in err
    assert _epochs(folder) == before  # nothing mixed in
    with Store.existing(folder) as store:  # and the summary counts one study's runs
        assert store.study()["settings"]["epochs"] == 3 and store.counts() == {"done": 12}


def test_a_shrunk_grid_is_another_study_but_a_new_threshold_is_not(tmp_path) -> None:
    folder = tmp_path / "s"
    run_study(load_study("xor5d", TINY), folder, workers=1, progress=False)
    with pytest.raises(StudyMismatch, match=r"sizes: \[8, 40\] in the folder, \[8\] here"):
        run_study(load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8]", "val_size=200"]), folder, workers=1,
                  progress=False)
    summary = run_study(load_study("xor5d", TINY + ["thresholds=[0.9]"]), folder, workers=1, progress=False)
    assert summary.trained == 0
    with Store.existing(folder) as store:
        assert store.study()["settings"]["thresholds"] == [0.9]


# --------------------------------------------------------------------------- failed runs, damage, lock

def test_failed_runs_are_counted_apart_on_resume_and_make_the_command_fail(tmp_path, capsys) -> None:
    study = _exploding_study(tmp_path, True)
    folder = tmp_path / "out"
    run_study(study, folder, workers=1, progress=False)
    again = run_study(study, folder, workers=1, progress=False)
    assert (again.trained, again.skipped, again.failed_before, again.done) == (0, 8, 4, 4)
    assert main(["run", str(tmp_path / "exploding.toml"), "--out", str(folder), "--no-progress", "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "0 runs trained, 4 already done in" in captured.out
    assert "4 failed earlier and skipped (--retry-failed trains them again)" in captured.out
    assert "polarnet: 4 of 8 runs failed" in captured.err and "--retry-failed" in captured.err


def test_runs_whose_numbers_were_damaged_are_trained_again(tmp_path) -> None:
    study = load_study("xor5d", TINY)
    folder = tmp_path / "s"
    run_study(study, folder, workers=1, progress=False)
    run_study(study, tmp_path / "reference", workers=1, progress=False)
    victim = plan(study)[2].key
    with _db(folder) as db:
        db.execute("UPDATE epochs SET val_acc = 0.123 WHERE run = ? AND epoch = 3", (victim,))
    summary = run_study(study, folder, workers=1, progress=False)
    assert (summary.damaged, summary.trained) == (1, 1)
    # trained alone now, inside an ensemble before: equal up to float32 rounding (docs/experiments.md)
    _assert_same_results(folder, tmp_path / "reference", 1e-6)


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path) -> None:
    folder = tmp_path / "s"
    with Store(folder) as holder, holder.lock():
        with pytest.raises(StoreError, match="being written by another polarnet run"):
            run_study(load_study("xor5d", TINY), folder, workers=1, progress=False)


# --------------------------------------------------------------------------- signals (in-process executor)

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_runs_stops_the_sweep_keeping_finished_runs(tmp_path, monkeypatch, signum) -> None:
    study = load_study("xor5d", TINY + ["vectorize=false"])
    real, calls = executors.compute_chunk, []

    def chunk_then_signal(specs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signum)
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(executors, "compute_chunk", chunk_then_signal)
    folder = tmp_path / "s"
    # what the test process started with: default_int_handler, or SIG_IGN when it was started
    # in the background by a shell without job control (as CI may be)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as info:
        run_study(study, folder, workers=1, progress=False)
    assert info.value.exit_code == 128 + signum
    counts = _check_store_invariants(folder, study)
    assert counts == {"done": 3, "running": 9}
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored
    monkeypatch.setattr(executors, "compute_chunk", real)
    assert run_study(study, folder, workers=1, progress=False).trained == 9
    assert _check_store_invariants(folder, study) == {"done": 12}


def test_a_signal_during_a_store_write_waits_for_the_write(tmp_path, monkeypatch) -> None:
    study = load_study("xor5d", TINY + ["vectorize=false"])
    real = Store.record

    def record_under_signal(self, results):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        real(self, results)

    monkeypatch.setattr(Store, "record", record_under_signal)
    with pytest.raises(Interrupted):
        run_study(study, tmp_path, workers=1, progress=False)
    assert _check_store_invariants(tmp_path, study) == {"done": 1, "running": 11}


IMAGE = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "init_linear='glorot_uniform'",
         "init_bias='zeros'", "conditions=['frozen_rand']", "sizes=[200]", "trials=1", "epochs=4", "batch_size=50",
         "lr=0.001", "val_size=200"]


@real_data
def test_an_interrupted_image_run_resumes_at_its_last_finished_epoch(tmp_path, monkeypatch) -> None:
    study = load_study("xor5d", IMAGE)
    run_study(study, tmp_path / "reference", workers=1, progress=False)
    real, epochs_seen, signalled = executors.train_run, [], []

    def signal_after_two_epochs(spec, device, on_epoch=None, checkpoint=None, **kwargs):
        def tick(fraction):
            epochs_seen.append(fraction)
            if len(epochs_seen) == 2 and not signalled:
                signalled.append(True)
                os.kill(os.getpid(), signal.SIGINT)
        # a checkpoint after every epoch: the default spaces them by their cost, which a loaded
        # machine can make skip epoch 2 (then the resume rightly starts at epoch 2)
        kwargs["checkpoint_overhead"] = float("inf")
        return real(spec, device, on_epoch=tick, checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(executors, "train_run", signal_after_two_epochs)
    folder = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run_study(study, folder, workers=1, progress=False)
    assert [p.name for p in (folder / "checkpoints").iterdir()] == [f"{plan(study)[0].key}.pt"]
    epochs_seen.clear()
    summary = run_study(study, folder, workers=1, progress=False)
    assert summary.trained == 1 and len(epochs_seen) == 2  # epochs 3 and 4 only
    assert not (folder / "checkpoints").exists()  # deleted once the run is in the store, then the folder
    _assert_same_results(folder, tmp_path / "reference", 0.0)


def test_a_signal_that_a_library_turns_into_its_own_error_still_stops_cleanly(tmp_path, monkeypatch) -> None:
    """Ray's C code turns the handler's exception into a SystemError; torch can make it a RuntimeError."""
    study = load_study("xor5d", TINY + ["vectorize=false"])

    def library_call(specs, *args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as e:
            raise SystemError("returned a result with an exception set") from e

    monkeypatch.setattr(executors, "compute_chunk", library_call)
    with pytest.raises(Interrupted) as info:
        run_study(study, tmp_path, workers=1, progress=False)
    assert info.value.signum == signal.SIGTERM


def test_a_run_recorded_as_a_signal_lands_leaves_no_checkpoint_behind(tmp_path, monkeypatch) -> None:
    """The checkpoint of a run goes with its recording, before a deferred signal stops the sweep
    (a run in the store is never resumed, so its file would stay for good); a completed sweep
    removes any checkpoint still there (a kill -9 between the two)."""
    from polarnet.experiments.trainer import checkpoint_file
    study = load_study("xor5d", TINY + ["vectorize=false"])
    folder = tmp_path / "study"
    checkpoints = folder / "checkpoints"
    real = Store.record
    recorded = []

    def record_then_signal(self, results):
        for result in results:  # as a run trained one at a time leaves it after its last epoch
            checkpoints.mkdir(parents=True, exist_ok=True)
            checkpoint_file(checkpoints, result.key).write_bytes(b"state")
        real(self, results)
        recorded.extend(r.key for r in results)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Store, "record", record_then_signal)
    with pytest.raises(Interrupted):
        run_study(study, folder, workers=1, progress=False)
    monkeypatch.undo()
    assert recorded and not any(checkpoint_file(checkpoints, key).exists() for key in recorded)
    checkpoints.mkdir(exist_ok=True)
    checkpoint_file(checkpoints, recorded[0]).write_bytes(b"left by a kill -9")
    summary = run_study(study, folder, workers=1, progress=False)
    assert summary.trained == len(plan(study)) - len(recorded)
    assert not checkpoints.exists()


def test_an_interrupted_xor_ensemble_resumes_at_its_last_checkpoint(tmp_path, monkeypatch) -> None:
    """Issue 22 §3: a vectorised XOR chunk keeps a checkpoint as it trains. Two ensembles (two
    hidden sizes); Ctrl-C after the first is recorded and 3 of the second's 6 epochs are trained:
    the next call trains the second's last 3 epochs only, and the store holds the numbers of an
    uninterrupted sweep, bit for bit."""
    study = load_study("xor5d", ["trials=2", "epochs=6", "sizes=[8, 40]", "hidden=[8, 16]", "val_size=200"])
    run_study(study, tmp_path / "reference", workers=1, progress=False)
    real, epochs_seen, chunks = executors.train_ensemble, [], []

    def signal_in_the_second_ensemble(specs, device, on_epoch=None, **kwargs):
        chunks.append(len(specs))

        def tick(work):
            epochs_seen.append(work)
            if len(chunks) == 2 and len(epochs_seen) == 6 + 3:
                os.kill(os.getpid(), signal.SIGINT)
        if "checkpoint" in kwargs:  # after every epoch: a loaded machine can't space them out
            kwargs["checkpoint_overhead"] = float("inf")
        return real(specs, device, on_epoch=tick, **kwargs)

    monkeypatch.setattr(executors, "train_ensemble", signal_in_the_second_ensemble)
    folder = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run_study(study, folder, workers=1, progress=False)
    assert chunks == [12, 12] and len(list((folder / "checkpoints").iterdir())) == 1
    epochs_seen.clear()
    summary = run_study(study, folder, workers=1, progress=False)
    assert summary.trained == 12 and len(epochs_seen) == 3  # epochs 4 to 6 of the second ensemble
    assert not (folder / "checkpoints").exists()
    _assert_same_results(folder, tmp_path / "reference", 0.0)


def test_a_resumed_sweep_cuts_the_ensembles_of_the_interrupted_one(tmp_path) -> None:
    """Two of four ensembles finished before an interruption: the next call trains the other two
    as they were cut, so it finds their checkpoints (cutting the runs left afresh, as before,
    made other ensembles, and trained them from the start)."""
    from polarnet.experiments.checkpoint import ensemble_checkpoint_file
    from polarnet.experiments.sweep import make_chunks, resumable_chunks

    runs = plan(load_study("xor5d", ["trials=24", "sizes=[8, 40]"]))
    first = make_chunks(runs, workers=4)
    assert [len(c) for c in first] == [36] * 4
    todo = first[1] + first[3]
    again = resumable_chunks(runs, todo, workers=4)
    assert again == [first[1], first[3]]
    assert {ensemble_checkpoint_file(tmp_path, c) for c in again} == \
        {ensemble_checkpoint_file(tmp_path, c) for c in (first[1], first[3])}
    assert resumable_chunks(runs, first[1][:5], workers=4) == [first[1][:5]]  # e.g. failed runs retried
