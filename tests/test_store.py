"""Tests for polarnet.experiments.store: the SQLite results store."""

from __future__ import annotations

import json
import math
import os
import sqlite3

import pandas as pd
import pytest

import polarnet
from polarnet.experiments.config import load_study
from polarnet.experiments.plan import plan
from polarnet.experiments.results import EpochRecord, RunResult
from polarnet.experiments.store import SCHEMA_VERSION, STORE_NAME, Store, StoreError, StudyMismatch, software_versions

RUN_COLUMNS = ["key", "condition", "n_train", "hidden", "reset", "trial", "frozen", "status", "reason",
               "acc_before_align", "acc_after_align", "started", "finished", "seconds", "device", "host", "versions",
               "settings", "constrained", "checksum", "engine"]
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


# --------------------------------------------------------------------------- schema version, column order

def test_new_store_carries_the_schema_version(store):
    assert store.db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_store_of_a_newer_polarnet_is_refused_by_writers_and_readers(tmp_path, specs):
    folder = tmp_path / "newer"
    with Store(folder) as s:
        s.mark_running(specs[:1])
        s.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for open_ in (Store, Store.existing):
        with pytest.raises(StoreError, match=r"written by a newer polarnet .*upgrade polarnet"):
            open_(folder)


_V0_SCHEMA = """
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (key TEXT PRIMARY KEY, condition TEXT NOT NULL, n_train INTEGER NOT NULL, hidden INTEGER NOT NULL,
    reset TEXT NOT NULL, trial INTEGER NOT NULL, frozen INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')), reason TEXT, acc_before_align REAL,
    acc_after_align REAL, started REAL, finished REAL, seconds REAL, device TEXT, host TEXT, versions TEXT,
    settings TEXT NOT NULL);
CREATE TABLE epochs (run TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, resets INTEGER, sign_changes TEXT, wall REAL,
    PRIMARY KEY (run, epoch));
CREATE TABLE magnitudes (run TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE, layer TEXT NOT NULL,
    quantiles TEXT NOT NULL, PRIMARY KEY (run, layer));
"""


def test_a_store_from_before_versioning_is_read_and_upgraded_keeping_its_rows(tmp_path, specs):
    folder = tmp_path / "v0"
    folder.mkdir()
    db = sqlite3.connect(folder / STORE_NAME)
    db.executescript(_V0_SCHEMA)
    db.execute("INSERT INTO runs (key, condition, n_train, hidden, reset, trial, frozen, status, settings) "
               "VALUES (?, 'fluid_rand', 8, 4, 'none', 0, 0, 'done', '{}')", (specs[0].key,))
    db.execute("INSERT INTO epochs VALUES (?, 1, 0.5, 0.6, 0.7, 0.8, 0, '{}', 0.1)", (specs[0].key,))
    db.commit()
    db.close()
    with Store.existing(folder) as reader:  # a reader changes nothing
        assert reader.epochs()["val_acc"].tolist() == [0.8]
    assert sqlite3.connect(folder / STORE_NAME).execute("PRAGMA user_version").fetchone() == (0,)
    with Store(folder) as writer:
        assert writer.db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert writer.counts() == {"done": 1}
        assert writer.runs()["constrained"].isna().all()
        writer.mark_running(specs[1:2])
        writer.record([_done(specs[1], 2, extra={"constrained": 36})])
        assert writer.runs().set_index("key").loc[specs[1].key, "constrained"] == 36
        assert writer.damaged_runs() == []


def test_inserts_go_by_column_name_whatever_the_tables_column_order(tmp_path, specs):
    folder = tmp_path / "reordered"
    folder.mkdir()
    db = sqlite3.connect(folder / STORE_NAME)
    db.executescript(_V0_SCHEMA.replace(
        "train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL, resets INTEGER, sign_changes TEXT, wall REAL",
        "wall REAL, sign_changes TEXT, resets INTEGER, val_acc REAL, val_loss REAL, train_acc REAL, train_loss REAL")
        .replace("layer TEXT NOT NULL,\n    quantiles TEXT NOT NULL", "quantiles TEXT NOT NULL, layer TEXT NOT NULL"))
    db.close()
    with Store(folder) as s:
        s.mark_running(specs[:1])
        s.record([_done(specs[0], 2, extra={"init_magnitudes": {"0.weight": [0.5] * 21}})])
        row = s.epochs().iloc[1]
        assert (row["train_loss"], row["val_acc"], row["resets"], row["wall"]) == pytest.approx((0.5, 0.6, 6, 0.02))
        assert s.magnitudes()["layer"].tolist() == ["0.weight"]


# --------------------------------------------------------------------------- read-only readers

def _ro_mount(path):
    """A small tmpfs at ``path`` (root only); skips where mounting isn't allowed."""
    import subprocess

    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    return path


def test_readers_open_read_only_and_change_nothing(tmp_path, specs):
    folder = tmp_path / "study"
    with Store(folder) as s:
        s.mark_running(specs[:2])
        s.record([_done(specs[0], 2)])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with Store.existing(folder) as reader:
        assert len(reader.epochs()) == 2 and len(reader.runs()) == 2
        with pytest.raises(StoreError, match="read-only"):
            reader.set_study({"x": 1})
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("DELETE FROM runs")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before


def test_a_study_on_a_read_only_file_system_can_be_read(tmp_path, specs):
    import subprocess

    mount = _ro_mount(tmp_path / "mnt")
    try:
        folder = mount / "study"
        with Store(folder) as s:
            s.set_study({"settings": {"name": "ro"}})
            s.mark_running(specs[:1])
            s.record([_done(specs[0], 3)])
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with Store.existing(folder) as reader:
            assert len(reader.epochs()) == 3 and reader.study()["settings"]["name"] == "ro"
        from polarnet.experiments import load_results

        assert len(load_results(folder)) == 3
        with pytest.raises(StoreError, match="not writable|cannot write|Read-only"):
            Store(folder)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# --------------------------------------------------------------------------- damage

def _finished_store(folder, specs) -> None:
    with Store(folder) as s:
        s.mark_running(specs)
        s.record([_done(spec, 2, extra={"init_magnitudes": {"0.weight": [0.1] * 21}}) for spec in specs])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "zero_tail"])
def test_a_damaged_file_is_one_clear_error_for_writers_and_readers(tmp_path, specs, damage):
    folder = tmp_path / "damaged"
    _finished_store(folder, specs)
    path = folder / STORE_NAME
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # the last pages overwritten
        path.write_bytes(data[:-2048] + bytes(2048))
    for open_ in (Store, Store.existing):
        with pytest.raises(StoreError, match=r"corrupted|damaged|not a polarnet store") as info:
            with open_(folder) as s:  # some damage only shows when the data is read
                s.epochs(), s.runs(), s.magnitudes()
        assert "sqlite3" in str(info.value) and "recover" in str(info.value)


def test_numbers_changed_behind_sqlites_back_fail_their_checksum(tmp_path, specs):
    folder = tmp_path / "edited"
    _finished_store(folder, specs)
    with sqlite3.connect(folder / STORE_NAME) as db:  # quick_check still says ok after this
        db.execute("UPDATE epochs SET val_acc = 0.99 WHERE run = ? AND epoch = 2", (specs[3].key,))
    assert sqlite3.connect(folder / STORE_NAME).execute("PRAGMA quick_check").fetchone() == ("ok",)
    with Store.existing(folder) as reader:
        assert reader.damaged_runs() == [specs[3].key]
        with pytest.raises(StoreError, match=f"1 run.* no longer match their checksum .*{specs[3].key}"):
            reader.epochs()
    with Store(folder) as writer:  # a writer sends the run back to be trained
        assert writer.retrain_damaged() == [specs[3].key]
        assert writer.counts() == {"done": len(specs) - 1, "running": 1}
        assert writer.damaged_runs() == []


@pytest.mark.parametrize("column", ["val_loss", "resets", "sign_changes"])
def test_every_stored_number_is_covered_by_the_checksum(tmp_path, specs, column):
    folder = tmp_path / column
    _finished_store(folder, specs[:2])
    value = {"val_loss": 0.123, "resets": 999, "sign_changes": '{"0.weight":1.0}'}[column]
    with sqlite3.connect(folder / STORE_NAME) as db:
        db.execute(f"UPDATE epochs SET {column} = ? WHERE run = ? AND epoch = 1", (value, specs[1].key))
        db.execute("UPDATE magnitudes SET quantiles = '[0.2]' WHERE run = ?", (specs[0].key,))
        db.execute("UPDATE runs SET acc_after_align = 0.01 WHERE key = ?", (specs[0].key,))
    with Store.existing(folder) as reader:
        assert reader.damaged_runs() == sorted([specs[0].key, specs[1].key])


@pytest.mark.parametrize(("column", "value"), [("constrained", 37), ("seconds", 9.5), ("engine", "stacked"),
                                               ("device", "cuda"), ("settings", '{"lr": 1}')])
def test_every_runs_field_analysis_reads_is_covered_by_the_checksum(tmp_path, specs, column, value):
    """constrained feeds the resets diagnostic, seconds the timings: changing either (or the
    engine, device or settings) behind SQLite's back is damage, as an epoch's loss is."""
    folder = tmp_path / column
    _finished_store(folder, specs[:2])
    with sqlite3.connect(folder / STORE_NAME) as db:
        db.execute("UPDATE runs SET constrained = 36 WHERE key = ?", (specs[1].key,))  # as recorded below
        assert db.execute(f"UPDATE runs SET {column} = ? WHERE key = ?", (value, specs[0].key)).rowcount == 1
    with Store.existing(folder) as reader:
        assert reader.damaged_runs() == sorted([specs[0].key, specs[1].key])
    with Store(folder) as writer:  # retrained and recorded again, the runs verify
        assert writer.retrain_damaged() == sorted([specs[0].key, specs[1].key])
        writer.record([_done(specs[0], 2, extra={"constrained": 36}, engine="vmap"), _done(specs[1])])
        assert writer.runs().set_index("key").loc[specs[0].key, ["constrained", "engine"]].tolist() == [36, "vmap"]


def test_checksums_written_before_version_2_still_verify(tmp_path, specs):
    """A store whose checksums cover the first version's columns (a bare digest) reads as it
    did: its runs are not damage, and its damage is still found."""
    from polarnet.experiments.store import _RUN_SUMMED, _checksum

    folder = tmp_path / "v1"
    _finished_store(folder, specs[:2])
    with sqlite3.connect(folder / STORE_NAME) as db:
        for spec in specs[:2]:
            run = db.execute(f"SELECT {_RUN_SUMMED[1]} FROM runs WHERE key = ?", (spec.key,)).fetchone()
            epochs = db.execute("SELECT epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes, wall "
                                "FROM epochs WHERE run = ? ORDER BY epoch", (spec.key,)).fetchall()
            mags = db.execute("SELECT layer, quantiles FROM magnitudes WHERE run = ?", (spec.key,)).fetchall()
            old = _checksum(run, epochs, mags, version=1)
            assert ":" not in old
            db.execute("UPDATE runs SET checksum = ?, engine = NULL WHERE key = ?", (old, spec.key))
        db.execute("UPDATE runs SET seconds = 99 WHERE key = ?", (specs[0].key,))  # not covered by version 1
        db.execute("UPDATE runs SET acc_after_align = 0.01 WHERE key = ?", (specs[1].key,))  # covered
    with Store.existing(folder) as reader:
        assert reader.damaged_runs() == [specs[1].key]


def test_the_store_says_when_planned_runs_are_missing(tmp_path, specs):
    """bind_study keeps the plan: a deleted or interrupted run is counted, a store without a
    plan (bound before polarnet kept it) says nothing."""
    folder = tmp_path / "s"
    with Store(folder) as s:
        s.bind_study({"epochs": 2}, [r.key for r in specs])
        s.mark_running(specs)
        s.record([_done(spec) for spec in specs])
        assert s.unfinished() == (0, len(specs)) and s.unfinished_line() is None
    with sqlite3.connect(folder / STORE_NAME) as db:
        db.execute("DELETE FROM runs WHERE key = ?", (specs[2].key,))
        db.execute("UPDATE runs SET status = 'running' WHERE key = ?", (specs[4].key,))
    with Store.existing(folder) as reader:
        assert reader.unfinished() == (2, 6)
        assert reader.unfinished_line().startswith("polarnet: 2 of the study's 6 planned runs are not in the store")
    with sqlite3.connect(folder / STORE_NAME) as db:
        db.execute("DELETE FROM study WHERE key = 'planned'")
    with Store.existing(folder) as reader:
        assert reader.unfinished() is None and reader.unfinished_line() is None


# --------------------------------------------------------------------------- one study per folder

def test_bind_study_refuses_runs_of_another_study_and_names_the_differences(tmp_path, specs):
    folder = tmp_path / "xor5d"
    other = plan(load_study("xor5d", ["trials=2", "epochs=5", "sizes=[8]", "hidden=[4]"]))
    with Store(folder) as s:
        s.bind_study({"epochs": 2, "trials": 2}, [r.key for r in specs])
        s.mark_running(specs)
        with pytest.raises(StudyMismatch) as info:
            s.bind_study({"epochs": 5, "trials": 2}, [r.key for r in other])
        text = str(info.value)
        assert "holds another study: 6 of its runs are not part of this one" in text
        assert "epochs: 2 in the folder, 5 here" in text and "trials" not in text
        assert f"--out {tmp_path / 'xor5d-2'}" in text
        assert s.study()["settings"]["epochs"] == 2  # nothing changed


def test_bind_study_accepts_the_same_study_grown_or_relabelled(tmp_path, specs):
    with Store(tmp_path / "s") as s:
        s.bind_study({"epochs": 2, "thresholds": [0.8]}, [r.key for r in specs[:3]])
        s.mark_running(specs[:3])
        s.bind_study({"epochs": 2, "thresholds": [0.9]}, [r.key for r in specs])  # more runs, other threshold
        assert s.study()["settings"]["thresholds"] == [0.9]


def test_bind_study_with_equal_settings_but_other_runs_blames_changed_files(tmp_path, specs):
    with Store(tmp_path / "s") as s:
        s.bind_study({"proportions": "p.json"}, [r.key for r in specs[:3]])
        s.mark_running(specs[:3])
        with pytest.raises(StudyMismatch, match="file they name has changed"):
            s.bind_study({"proportions": "p.json"}, [r.key for r in specs[3:]])


# --------------------------------------------------------------------------- lock, bad folders, full disk

def test_one_writer_at_a_time(tmp_path):
    with Store(tmp_path / "s") as first, first.lock():
        with Store(tmp_path / "s") as second:
            with pytest.raises(StoreError, match=rf"being written by another polarnet run \(pid {os.getpid()}"):
                with second.lock():
                    pass
    with Store(tmp_path / "s") as again, again.lock():  # released with the first
        pass


def test_bad_folders_are_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        Store(tmp_path / "file")
    with pytest.raises(StoreError, match="cannot create the study folder .*Not a directory"):
        Store(tmp_path / "file" / "study")
    with pytest.raises(StoreError, match="no results.sqlite"):
        Store.existing(tmp_path)


def test_a_full_disk_is_one_clear_error_and_keeps_what_was_written(tmp_path, specs):
    mount = _ro_mount(tmp_path / "mnt")
    import subprocess

    try:
        subprocess.run(["mount", "-o", "remount,size=160k", str(mount)], check=True)
        folder = mount / "study"
        with Store(folder) as s:
            s.mark_running(specs[:1])
            s.record([_done(specs[0], 2)])
            s.mark_running(specs[1:])
            big = [RunResult(spec.key, "done", epochs=_epochs(2000)) for spec in specs[1:]]
            with pytest.raises(StoreError, match="disk is full.*free some space and run the same command again"):
                s.record(big)
        with Store.existing(folder) as reader:
            assert reader.counts()["done"] == 1 and len(reader.epochs()) == 2
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_mismatch_message_lists_only_what_really_differs(tmp_path, specs):
    study = load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "hidden=[4]"])
    other = load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8]", "hidden=[4]", "lr=0.01"])
    with Store(tmp_path / "s") as s:
        s.bind_study(study.to_dict(), [r.key for r in specs])  # tuples in, lists out
        s.mark_running(specs)
        with pytest.raises(StudyMismatch) as info:
            s.bind_study(other.to_dict(), [r.key for r in plan(other)])
    lines = [line for line in str(info.value).splitlines() if line.startswith("  ")]
    assert lines == ["  lr: 0.03 in the folder, 0.01 here"]


def test_a_changed_condition_definition_is_named_field_by_field(tmp_path, specs):
    with Store(tmp_path / "s") as s:
        s.bind_study({"define_condition": {"mine": {"lr": 0.1, "frozen": True}}}, [r.key for r in specs])
        s.mark_running(specs)
        with pytest.raises(StudyMismatch, match=r"  define_condition\.mine\.lr: 0\.1 in the folder, 0\.2 here"):
            s.bind_study({"define_condition": {"mine": {"lr": 0.2, "frozen": True}}}, [])


def test_readers_given_the_store_file_ask_for_its_folder(tmp_path, specs):
    _finished_store(tmp_path / "s", specs[:1])
    with pytest.raises(StoreError, match=r"is a file: give the study folder that holds it \(.*s\), not the file"):
        Store.existing(tmp_path / "s" / STORE_NAME)


def test_the_integrity_check_reads_one_snapshot_while_a_writer_commits(tmp_path, specs):
    folder = tmp_path / "live"
    _finished_store(folder, specs[:2])
    with Store.existing(folder) as reader, Store(folder) as writer:
        with reader._snapshot():
            before = reader.db.execute("SELECT COUNT(*) FROM epochs").fetchone()
            writer.mark_running(specs[2:3])
            writer.record([_done(specs[2], 3)])
            assert reader.db.execute("SELECT COUNT(*) FROM epochs").fetchone() == before
        assert reader.damaged_runs() == []
        assert reader.db.execute("SELECT COUNT(*) FROM epochs").fetchone() == (before[0] + 3,)


def test_a_store_that_cannot_be_opened_for_reading_says_so(tmp_path, specs, monkeypatch):
    _finished_store(tmp_path / "s", specs[:1])
    real = sqlite3.connect

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    with pytest.raises(StoreError, match="cannot be opened for reading") as info:
        Store.existing(tmp_path / "s")
    assert "--out" not in str(info.value)
    monkeypatch.setattr(sqlite3, "connect", real)


def test_results_and_report_say_when_planned_runs_are_missing(tmp_path, capsys):
    """A deleted run row (the fuzzing finding) is no longer exported without notice."""
    from polarnet.cli import main
    from polarnet.experiments import run_study

    folder = tmp_path / "study"
    run_study(load_study("xor5d", ["trials=1", "epochs=1", "sizes=[8]"]), folder, progress=False)
    assert main(["results", str(folder)]) == 0
    assert "planned runs" not in capsys.readouterr().err
    with sqlite3.connect(folder / STORE_NAME) as db:
        key = db.execute("SELECT key FROM runs LIMIT 1").fetchone()[0]
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM runs WHERE key = ?", (key,))
    line = "polarnet: 1 of the study's 3 planned runs are not in the store (never run, interrupted or deleted)"
    for command in (["results", str(folder)], ["report", str(folder)]):
        assert main(command) == 0
        assert line in capsys.readouterr().err
