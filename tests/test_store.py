"""Tests for polarnet.experiments.store: the SQLite results store."""

from __future__ import annotations

import json
import math
import sqlite3

import pandas as pd
import pytest

import polarnet
from polarnet.experiments.config import load_study
from polarnet.experiments.plan import plan
from polarnet.experiments.results import EpochRecord, RunResult
from polarnet.experiments.store import STORE_NAME, Store, software_versions

RUN_COLUMNS = ["key", "condition", "n_train", "hidden", "reset", "trial", "frozen", "status", "reason",
               "acc_before_align", "acc_after_align", "started", "finished", "seconds", "device", "host", "versions",
               "settings"]
EPOCH_COLUMNS = ["condition", "n_train", "hidden", "reset", "trial", "frozen", "status", "run", "epoch", "train_loss",
                 "train_acc", "val_loss", "val_acc", "resets", "sign_changes", "wall"]


@pytest.fixture(scope="module")
def specs():
    """6 runs: 3 conditions × 2 trials at n = 8."""
    return plan(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "hidden=[4]"]))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "study") as s:
        yield s


def _epochs(n: int, base: float = 0.0) -> list[EpochRecord]:
    return [EpochRecord(e, 0.7 - 0.1 * e + base, 0.5 + 0.1 * e, 0.8 - 0.1 * e + base, 0.4 + 0.1 * e, 3 * e,
                        {"0.weight": 0.25 / e, "2.weight": 0.0}, 0.01 * e) for e in range(1, n + 1)]


def _done(spec, n: int = 2, **kw) -> RunResult:
    return RunResult(spec.key, "done", acc_before_align=0.5, acc_after_align=0.55, epochs=_epochs(n), seconds=1.5,
                     device="cpu", **kw)


def _rows(store, sql, *args):
    return store.db.execute(sql, args).fetchall()


def test_new_store_is_empty(tmp_path):
    with Store(tmp_path / "new" / "deeper") as s:  # the folder is created
        assert s.path == tmp_path / "new" / "deeper" / STORE_NAME
        assert s.path.is_file()
        assert s.finished_keys() == set()
        assert s.counts() == {}
        assert s.study() == {}
        assert s.runs().empty and s.epochs().empty


def test_mark_running_writes_running_rows(store, specs):
    store.mark_running(specs[:3])
    assert store.counts() == {"running": 3}
    assert store.finished_keys() == set()
    row = _rows(store, "SELECT condition, n_train, hidden, reset, trial, frozen, status, settings, versions "
                       "FROM runs WHERE key = ?", specs[0].key)[0]
    assert row[:7] == ("frozen_sufficient", 8, 4, "posRand", 0, 1, "running")
    assert json.loads(row[7]) == json.loads(json.dumps(specs[0].settings()))
    assert json.loads(row[8])["polarnet"] == polarnet.__version__
    assert software_versions()["polarnet"] == polarnet.__version__
    fluid = next(s for s in specs if s.condition.name == "fluid_rand")
    store.mark_running([fluid])
    assert _rows(store, "SELECT frozen FROM runs WHERE key = ?", fluid.key) == [(0,)]


def test_record_writes_epochs_and_status(store, specs):
    store.mark_running(specs)
    store.record([_done(specs[0], 3), _done(specs[1], 2)])
    assert store.counts() == {"done": 2, "running": 4}
    assert store.finished_keys() == {specs[0].key, specs[1].key}
    rows = _rows(store, "SELECT epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes, wall "
                        "FROM epochs WHERE run = ? ORDER BY epoch", specs[0].key)
    assert [r[0] for r in rows] == [1, 2, 3]
    e2 = rows[1]
    assert e2[1:6] == pytest.approx((0.5, 0.7, 0.6, 0.6, 6))
    assert json.loads(e2[6]) == {"0.weight": 0.125, "2.weight": 0.0}
    assert e2[7] == pytest.approx(0.02)
    status = _rows(store, "SELECT status, reason, acc_before_align, acc_after_align, seconds, device, finished, "
                          "started FROM runs WHERE key = ?", specs[0].key)[0]
    assert status[:6] == ("done", None, 0.5, 0.55, 1.5, "cpu")
    assert status[6] >= status[7] > 0


def test_record_replaces_earlier_epochs_of_the_run(store, specs):
    store.mark_running(specs[:1])
    store.record([_done(specs[0], 4)])
    store.record([_done(specs[0], 2)])
    assert _rows(store, "SELECT COUNT(*) FROM epochs WHERE run = ?", specs[0].key) == [(2,)]


def test_failed_run_keeps_its_reason(store, specs):
    store.mark_running(specs[:2])
    nan_epochs = _epochs(2)
    nan_epochs[1].train_loss = math.nan
    store.record([RunResult(specs[0].key, "failed", reason="non-finite loss at epoch 2", epochs=nan_epochs),
                  _done(specs[1])])
    assert store.counts() == {"failed": 1, "done": 1}
    assert store.finished_keys() == {specs[0].key, specs[1].key}  # a failed run is not retried
    runs = store.runs().set_index("key")
    assert runs.loc[specs[0].key, "status"] == "failed"
    assert runs.loc[specs[0].key, "reason"] == "non-finite loss at epoch 2"
    assert pd.isna(runs.loc[specs[1].key, "reason"])
    assert len(store.epochs()) == 4


def test_nan_and_inf_metrics_are_stored_as_null(store, specs):
    store.mark_running(specs[:1])
    epochs = [EpochRecord(1, math.nan, 0.5, math.inf, 0.5, 0, {}, 0.1),
              EpochRecord(2, -math.inf, math.nan, 0.3, math.nan, 0, {}, 0.1)]
    store.record([RunResult(specs[0].key, "failed", reason="nan", acc_before_align=math.nan,
                            acc_after_align=math.inf, epochs=epochs)])
    rows = _rows(store, "SELECT train_loss, train_acc, val_loss, val_acc FROM epochs WHERE run = ? ORDER BY epoch",
                 specs[0].key)
    assert rows == [(None, 0.5, None, 0.5), (None, None, 0.3, None)]
    assert _rows(store, "SELECT acc_before_align, acc_after_align FROM runs") == [(None, None)]
    frame = store.epochs()
    assert pd.isna(frame["train_loss"].iloc[0]) and pd.isna(frame["val_loss"].iloc[0])
    assert frame["train_acc"].iloc[0] == 0.5


def test_record_of_an_unmarked_run_raises_and_rolls_back(store, specs):
    store.mark_running(specs[:1])
    store.record([_done(specs[0], 2)])  # a finished run whose epochs must survive the failed transaction
    store.mark_running(specs[1:2])
    with pytest.raises((KeyError, sqlite3.IntegrityError)):
        store.record([_done(specs[1], 3), _done(specs[0], 5), _done(specs[2], 2)])  # specs[2] was never marked
    # nothing of the failed call was written: specs[1] still running without epochs, specs[0] keeps its 2 epochs
    assert store.counts() == {"done": 1, "running": 1}
    assert _rows(store, "SELECT status FROM runs WHERE key = ?", specs[1].key) == [("running",)]
    assert _rows(store, "SELECT COUNT(*) FROM epochs WHERE run = ?", specs[1].key) == [(0,)]
    assert _rows(store, "SELECT COUNT(*) FROM epochs WHERE run = ?", specs[0].key) == [(2,)]
    assert _rows(store, "SELECT COUNT(*) FROM epochs WHERE run = ?", specs[2].key) == [(0,)]
    assert _rows(store, "SELECT COUNT(*) FROM runs WHERE key = ?", specs[2].key) == [(0,)]
    # and the connection is usable afterwards
    store.record([_done(specs[1], 1)])
    assert store.counts() == {"done": 2}


def test_record_of_an_unmarked_run_without_epochs_names_it(store, specs):
    with pytest.raises(KeyError, match=f"run {specs[0].key} was never marked running; call mark_running first"):
        store.record([RunResult(specs[0].key, "failed", reason="boom")])
    assert store.counts() == {}


def test_record_of_an_unmarked_run_with_epochs_names_it(store, specs):
    with pytest.raises(KeyError, match="never marked running"):
        store.record([_done(specs[0])])


def test_record_of_an_unmarked_run_with_epochs_writes_nothing(store, specs):
    with pytest.raises((KeyError, sqlite3.IntegrityError)):
        store.record([_done(specs[0])])
    assert store.counts() == {}
    assert _rows(store, "SELECT COUNT(*) FROM epochs") == [(0,)]


def test_mark_running_does_not_reopen_finished_runs(store, specs):
    store.mark_running(specs[:2])
    store.record([_done(specs[0])])
    store.mark_running(specs[:2])  # a re-run marks again; the finished run stays finished
    assert store.counts() == {"done": 1, "running": 1}
    assert store.finished_keys() == {specs[0].key}
    assert _rows(store, "SELECT COUNT(*) FROM runs") == [(2,)]


def test_status_must_be_known(store, specs):
    store.mark_running(specs[:1])
    with pytest.raises(sqlite3.IntegrityError):
        store.record([RunResult(specs[0].key, "finished")])
    assert store.counts() == {"running": 1}


def test_runs_and_epochs_frames(store, specs):
    store.mark_running(specs)
    store.record([_done(s, 2) for s in specs])
    runs = store.runs()
    assert runs.columns.tolist() == RUN_COLUMNS
    assert len(runs) == 6
    assert set(runs["key"]) == {s.key for s in specs}
    # ordered by condition, n_train, hidden, reset, trial
    assert runs["condition"].tolist() == ["fluid_rand"] * 2 + ["frozen_rand"] * 2 + ["frozen_sufficient"] * 2
    assert runs["trial"].tolist() == [0, 1] * 3
    assert runs["frozen"].tolist() == [0, 0, 1, 1, 1, 1]
    assert set(runs["status"]) == {"done"}
    epochs = store.epochs()
    assert epochs.columns.tolist() == EPOCH_COLUMNS
    assert len(epochs) == 6 * 2
    assert epochs["epoch"].tolist() == [1, 2] * 6
    first = epochs.iloc[0]
    assert (first["condition"], first["n_train"], first["hidden"], first["reset"], first["trial"]) == \
        ("fluid_rand", 8, 4, "none", 0)
    assert first["run"] == next(s.key for s in specs if s.condition.name == "fluid_rand" and s.trial == 0)
    assert first["val_acc"] == pytest.approx(0.5)
    assert json.loads(first["sign_changes"]) == {"0.weight": 0.25, "2.weight": 0.0}


def test_epochs_frame_leaves_out_runs_without_epochs(store, specs):
    store.mark_running(specs[:2])
    store.record([_done(specs[0], 3)])
    assert len(store.runs()) == 2
    assert set(store.epochs()["run"]) == {specs[0].key}


def test_reopening_sees_the_data(tmp_path, specs):
    folder = tmp_path / "study"
    with Store(folder) as s:
        s.set_study({"settings": {"trials": 2}})
        s.mark_running(specs)
        s.record([_done(specs[0], 3), RunResult(specs[1].key, "failed", reason="boom")])
    with Store(folder) as s:
        assert s.counts() == {"done": 1, "failed": 1, "running": 4}
        assert s.finished_keys() == {specs[0].key, specs[1].key}
        assert len(s.epochs()) == 3
        assert s.study() == {"settings": {"trials": 2}}
    # a plain sqlite3 connection sees the committed data too
    db = sqlite3.connect(folder / STORE_NAME)
    try:
        assert db.execute("SELECT COUNT(*) FROM epochs").fetchone() == (3,)
    finally:
        db.close()


def test_set_study_round_trip(store):
    study = load_study("xor5d", ["trials=2"])
    store.set_study({"settings": study.to_dict(), "preset": "xor5d", "nothing": None})
    got = store.study()
    assert got["preset"] == "xor5d" and got["nothing"] is None
    assert got["settings"]["trials"] == 2
    assert got["settings"]["sizes"] == list(study.sizes)  # tuples come back as lists
    assert got["settings"] == json.loads(json.dumps(study.to_dict()))
    store.set_study({"preset": "other"})  # replaces one key, keeps the others
    assert store.study()["preset"] == "other"
    assert store.study()["settings"]["trials"] == 2


def test_wal_mode(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
