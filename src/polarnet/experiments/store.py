"""The results store: one SQLite file per study folder (``results.sqlite``).

Tables:

* ``study`` — key/value: the study's settings, the preset, the creation time.
* ``runs`` — one row per run: ``key`` (hash of its settings), grid point, ``status``
  (``running`` | ``done`` | ``failed``), ``reason``, accuracy before/after alignment,
  timings, device, host and software versions, the full settings as JSON, the number of
  weights under the run's template (``constrained``; NULL for fluid runs), a checksum of
  the run's stored numbers (``checksum``) and the engine that trained it (``engine``:
  ``stacked``, ``vmap`` or ``single``, see :mod:`polarnet.experiments.engines`; NULL for runs
  stored before polarnet recorded it).
* ``epochs`` — one row per run and epoch: train/validation loss and accuracy, resets,
  per-layer sign changes (JSON), wall time.
* ``magnitudes`` — per run and weight layer, the quantiles of ``|w|`` at initialisation
  (after alignment), at the levels of :data:`polarnet.experiments.results.QUANTILES`.

A run's epochs and its ``done``/``failed`` status are written in one transaction, so a
process killed at any instant leaves either a finished run or none: a run marked
``running`` is one that was interrupted, and is trained again on the next invocation.
The database runs in WAL mode; only the sweep's driver process writes, and it holds the
folder's lock (:meth:`Store.lock`) while it does.

A folder holds **one study**: every run in it belongs to the plan of the settings stored
with it (:meth:`Store.bind_study` refuses anything else). The schema carries a version
(``PRAGMA user_version``): a store written by a newer polarnet is refused, one written
before versioning is upgraded in place by a writer. SQLite keeps no checksum of the data,
so each run carries one of its own numbers (of every field analysis reads: the grid point,
status, reason, accuracies, seconds, device, settings, constrained weights, engine, and its
epochs and magnitudes; a checksum written before version 2 covers fewer, and is verified as
it was written); readers refuse a store whose numbers no longer match, and a writer sends
such runs back to be trained again. The study's planned run keys are stored with its
settings, so a reader can tell when runs are missing (:meth:`Store.unfinished`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import socket
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from .plan import RunSpec
from .results import RunResult

__all__ = ["Store", "StoreError", "StudyMismatch", "STORE_NAME", "SCHEMA_VERSION", "software_versions",
           "setting_differences", "NOT_STORED"]

STORE_NAME = "results.sqlite"
LOCK_NAME = "results.sqlite.lock"
#: the schema version written into ``PRAGMA user_version``; 0 is a store from before versioning
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    condition TEXT NOT NULL, n_train INTEGER NOT NULL, hidden INTEGER NOT NULL,
    reset TEXT NOT NULL, trial INTEGER NOT NULL, frozen INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    reason TEXT, acc_before_align REAL, acc_after_align REAL,
    started REAL, finished REAL, seconds REAL,
    device TEXT, host TEXT, versions TEXT, settings TEXT NOT NULL,
    constrained INTEGER, checksum TEXT, engine TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    resets INTEGER, sign_changes TEXT, wall REAL,
    PRIMARY KEY (run, epoch)
);
CREATE TABLE IF NOT EXISTS magnitudes (
    run TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
    layer TEXT NOT NULL,
    quantiles TEXT NOT NULL,
    PRIMARY KEY (run, layer)
);
"""
# columns added since the first, unversioned schema (version 0), added by a writer's upgrade
_ADDED_COLUMNS = {"runs": (("constrained", "INTEGER"), ("checksum", "TEXT"), ("engine", "TEXT"))}
_RECOVER = ("move {path} aside and run the study again (its runs are trained again), or salvage what SQLite "
            "can still read: sqlite3 {path} .recover | sqlite3 recovered.sqlite")


class StoreError(ValueError):
    """A study folder or its ``results.sqlite`` can't be used; the message says why and what to do."""


class StudyMismatch(StoreError):
    """The folder holds runs of another study than the one asked for."""


def software_versions() -> dict[str, str]:
    """Versions recorded with every run, and which C kernels trained it (:func:`polarnet.native.status`:
    the build's target and vector width, or why they were off), since the engines' paths and their
    speed follow from it."""
    from .. import native

    native.library()  # the sweep's workers built or found it the same way: built once, cached on disk
    return {"polarnet": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "kernels": native.status()}


def _real(value: Any) -> float | None:
    """A REAL column's value as SQLite gives it back: a Python float, or NULL for nan/±inf."""
    return float(value) if value is not None and math.isfinite(value) else None


def _checksum(run: Sequence[Any], epochs: Sequence[Sequence[Any]], magnitudes: Sequence[Sequence[Any]],
              version: int = 2) -> str:
    """A digest of a run's stored numbers, computed from values exactly as SQLite returns them:
    ``run`` holds the columns of :data:`_RUN_SUMMED` of that ``version``. Version 1 (the first,
    a bare digest) covered fewer run columns; version 2's digest carries a ``2:`` prefix."""
    text = json.dumps([list(run), [list(e) for e in epochs], sorted(list(m) for m in magnitudes)],
                      separators=(",", ":"), allow_nan=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return digest if version == 1 else f"{version}:{digest}"


def _version(checksum: str) -> int:
    """A checksum's version: 1 for a bare digest, else its prefix (0, checked as damaged, when garbled)."""
    head, _, _ = checksum.rpartition(":")
    return 1 if not head else int(head) if head.isdigit() else 0


# the run columns a checksum covers, in order, per checksum version (every runs field analysis
# reads since version 2: constrained feeds the resets diagnostic)
_RUN_SUMMED = {1: "key, condition, n_train, hidden, reset, trial, frozen, status, reason, acc_before_align, "
                  "acc_after_align",
               2: "key, condition, n_train, hidden, reset, trial, frozen, status, reason, acc_before_align, "
                  "acc_after_align, seconds, device, settings, constrained, engine"}
_EPOCH_SUMMED = "epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes, wall"


_JSON = json.JSONEncoder(separators=(",", ":"))


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _store_error(path: Path, error: sqlite3.DatabaseError, readonly: bool = False) -> StoreError:
    """An SQLite error as a one-line :class:`StoreError` that says what to do."""
    text = str(error)
    if "full" in text or getattr(error, "sqlite_errorcode", None) == 13:  # SQLITE_FULL
        return StoreError(f"{path}: the disk is full ({text}); free some space and run the same command again to "
                          f"resume (finished runs are kept)")
    if readonly and "unable to open" in text:
        return StoreError(f"{path}: cannot be opened for reading ({text}); check the file's permissions")
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StoreError(f"{path}: cannot write ({text}); choose a writable --out")
    if "locked" in text or "busy" in text:
        return StoreError(f"{path}: the database is locked by another process ({text}); wait for it and retry")
    return StoreError(f"{path} is damaged or not a polarnet store ({text}): " + _RECOVER.format(path=path))


def _guarded(method):
    """Turn SQLite's errors in a read into one clear :class:`StoreError`."""
    @functools.wraps(method)
    def read(self: Store, *args: Any, **kwargs: Any) -> Any:
        from pandas.errors import DatabaseError as PandasDatabaseError

        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise _store_error(self.path, e, self.readonly) from None
        except PandasDatabaseError as e:  # pandas wraps SQLite's error in its own
            cause = e.__cause__ if isinstance(e.__cause__, sqlite3.DatabaseError) else sqlite3.DatabaseError(str(e))
            raise _store_error(self.path, cause, self.readonly) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{self.path}: a stored value is unreadable ({e}): " + _RECOVER.format(path=self.path)) \
                from None

    return read



class Store:
    """The SQLite store of one study folder.

    ``Store(folder)`` opens it for writing (creating the folder and the file when missing;
    checking the file's integrity when it exists); ``Store.existing(folder)`` opens an
    existing store read-only, for analysis.

    Raises:
        StoreError: the folder can't be created or written, the file is damaged, or it was
            written by a newer polarnet; the message says what to do.

    Example:
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp())
        >>> store.finished_keys()
        set()
    """

    def __init__(self, folder: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        self.readonly = readonly
        self._verified = False
        self.db = self._open_readonly() if readonly else self._open_writable()
        self._host, self._versions = socket.gethostname(), json.dumps(software_versions())

    # -- opening -------------------------------------------------------------------
    def _open_writable(self) -> sqlite3.Connection:
        if self.folder.exists() and not self.folder.is_dir():
            raise StoreError(f"{self.folder} is a file, not a folder: choose another --out")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the study folder {self.folder}: {_why(e)}; choose another --out") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise StoreError(f"the study folder {self.folder} is not writable: choose another --out, or read its "
                             f"results with polarnet report/results")
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is not a regular file: move it aside")
        existed = self.path.is_file() and self.path.stat().st_size > 0
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._check_version(db)
            if existed:
                found = db.execute("PRAGMA quick_check").fetchall()
                if found != [("ok",)]:
                    problems = "; ".join(str(r[0]) for r in found[:3])
                    raise StoreError(f"{self.path} is corrupted (SQLite's quick_check: {problems}): "
                                     + _RECOVER.format(path=self.path))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            self._upgrade(db)
        except (sqlite3.DatabaseError, StoreError) as e:
            if db is not None:
                db.close()
            raise (_store_error(self.path, e) if isinstance(e, sqlite3.DatabaseError) else e) from None
        return db

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"{self.folder}: no {STORE_NAME}")
        uri = self.path.resolve().as_uri()
        db = None
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
            try:
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                db.close()
                # a WAL database in a folder nobody can write: SQLite can't make its shared-memory
                # file, but then no writer can be at work either, so reading it as immutable is safe
                db = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
            self._check_version(db)
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"study", "runs", "epochs"} <= tables:
                raise StoreError(f"{self.path} is not a polarnet results store (no runs/epochs tables)")
        except (sqlite3.DatabaseError, StoreError) as e:
            if db is not None:
                db.close()
            raise (_store_error(self.path, e, True) if isinstance(e, sqlite3.DatabaseError) else e) from None
        self._tables = tables
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer polarnet (store schema {version}; this polarnet "
                             f"reads up to {SCHEMA_VERSION}): upgrade polarnet (pip install -U polarnet)")

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Bring a store of an older schema up to :data:`SCHEMA_VERSION` (adds columns; keeps every row)."""
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def existing(cls, folder: str | os.PathLike[str], hint: str = "polarnet run … --out FOLDER") -> Store:
        """Open, read-only, the store of a folder that must already hold one (for reading results).

        Works on a read-only folder or file system; never changes the file.

        Raises:
            StoreError: the folder has no ``results.sqlite`` (the message says how to make one),
                or the file is damaged or newer than this polarnet.
        """
        if Path(folder).is_file():
            raise StoreError(f"{folder} is a file: give the study folder that holds it "
                             f"({Path(folder).parent}), not the file")
        if not (Path(folder) / STORE_NAME).is_file():
            raise StoreError(f"{folder}: no {STORE_NAME}; run a study into it first "
                             f"({hint.replace('FOLDER', str(folder))})")
        return cls(folder, readonly=True)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock: one ``polarnet run`` at a time per study folder.

        Raises:
            StoreError: another process holds it; the message names its pid.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            yield
            return
        handle = open(self.folder / LOCK_NAME, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise StoreError(f"{self.folder} is being written by another polarnet run ({holder}): wait for it "
                                 f"to finish, or run into another --out") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the lock

    # -- study ------------------------------------------------------------------
    def set_study(self, values: dict[str, Any]) -> None:
        """Save study-level facts (settings, preset, transfer reports…), JSON-encoded."""
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO study (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v, default=list)) for k, v in values.items()])

    @_guarded
    def study(self) -> dict[str, Any]:
        """The study-level facts."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM study")}

    @_guarded
    def bind_study(self, settings: dict[str, Any], planned: Iterable[str], facts: dict[str, Any] | None = None) -> None:
        """Make ``settings`` this folder's study, or refuse if the folder holds another one.

        The folder may hold only runs of the new study's plan (``planned`` run keys): the
        same study resumed, or the same study grown (more trials, sizes, conditions). Settings
        that change no run (thresholds, description…) are simply updated.

        Raises:
            StudyMismatch: runs in the folder are not part of this study; the message lists the
                settings that differ and says how to go on.
        """
        planned = set(planned)
        stray = [k for (k,) in self.db.execute("SELECT key FROM runs") if k not in planned]
        if stray:
            old = self.study().get("settings") or {}
            differ = [f"  {k}: {_show(a)} in the folder, {_show(b)} here" for k, a, b in setting_differences(old, settings)]
            what = ("\n".join(differ) if differ else
                    "  the settings are the same, but a source or proportions file they name has changed since")
            raise StudyMismatch(
                f"{self.folder} holds another study: {len(stray)} of its runs are not part of this one.\n"
                f"{what}\nRun into a new folder (--out {_free_name(self.folder)}), or repeat the folder's own "
                f"settings to resume it.")
        self.set_study({"settings": settings, "planned": sorted(planned), **(facts or {})})

    @_guarded
    def unfinished(self) -> tuple[int, int] | None:
        """``(runs of the study's plan not finished here, planned runs)``: runs never trained,
        interrupted (``running``) or deleted; ``None`` for a store that doesn't know its plan
        (bound before polarnet stored it).

        Example:
            >>> import tempfile
            >>> store = Store(tempfile.mkdtemp())
            >>> store.bind_study({"name": "demo"}, ["a", "b"])
            >>> store.unfinished()
            (2, 2)
        """
        row = self.db.execute("SELECT value FROM study WHERE key = 'planned'").fetchone()
        if row is None:
            return None
        planned = set(json.loads(row[0]))
        return len(planned - self.finished_keys()), len(planned)

    def unfinished_line(self) -> str | None:
        """One line saying how many planned runs the store lacks, or ``None`` when it has them
        all (or doesn't know its plan).

        Example:
            >>> import tempfile
            >>> store = Store(tempfile.mkdtemp())
            >>> store.bind_study({"name": "demo"}, ["a", "b"])
            >>> store.unfinished_line().split(" (")[0]
            "polarnet: 2 of the study's 2 planned runs are not in the store"
        """
        counts = self.unfinished()
        if counts is None or counts[0] == 0:
            return None
        return (f"polarnet: {counts[0]} of the study's {counts[1]} planned runs are not in the store (never run, "
                f"interrupted or deleted); run the study into this folder again to train them")

    # -- runs ---------------------------------------------------------------------
    @_guarded
    def finished_keys(self, include_failed: bool = True) -> set[str]:
        """Keys of runs that are done (and failed ones, by default): a resumed sweep skips them."""
        statuses = "('done', 'failed')" if include_failed else "('done')"
        return {k for (k,) in self.db.execute(f"SELECT key FROM runs WHERE status IN {statuses}")}

    @_guarded
    def failed_keys(self) -> set[str]:
        """Keys of failed runs."""
        return {k for (k,) in self.db.execute("SELECT key FROM runs WHERE status = 'failed'")}

    def mark_running(self, specs: Iterable[RunSpec]) -> None:
        """Record that these runs started (an interrupted one stays ``running``)."""
        now = time.time()
        rows = [(s.key, s.condition.name, s.n_train, s.hidden, s.reset, s.trial, int(s.condition.frozen), now,
                 self._host, self._versions, json.dumps(s.settings(), default=list)) for s in specs]
        with self._transaction():
            self.db.executemany(
                """INSERT INTO runs (key, condition, n_train, hidden, reset, trial, frozen, status, started, host,
                   versions, settings) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET status='running', started=excluded.started, reason=NULL,
                   checksum=NULL WHERE runs.status IN ('running', 'failed')""", rows)

    def record(self, results: Sequence[RunResult]) -> None:
        """Write finished runs: epochs, magnitudes, final status and checksum together, atomically."""
        now = time.time()
        keys = [r.key for r in results]
        encode = _JSON.encode
        with self._transaction():
            point = {}
            for start in range(0, len(keys), 500):  # SQLite limits the number of parameters
                part = keys[start : start + 500]
                point.update((row[0], row) for row in self.db.execute(
                    f"SELECT key, condition, n_train, hidden, reset, trial, frozen, settings FROM runs "
                    f"WHERE key IN ({','.join('?' * len(part))})", part))
            missing = [k for k in keys if k not in point]
            if missing:
                raise KeyError(f"run {missing[0]} was never marked running; call mark_running first")
            run_rows, epoch_rows, magnitude_rows = [], [], []
            for r in results:
                epochs = [(e.epoch, _real(e.train_loss), _real(e.train_acc), _real(e.val_loss), _real(e.val_acc),
                           None if e.resets is None else int(e.resets), encode(e.sign_changes), _real(e.wall))
                          for e in r.epochs]
                magnitudes = [(layer, encode([float(v) for v in q]))
                              for layer, q in r.extra.get("init_magnitudes", {}).items()]
                constrained = r.extra.get("constrained")
                constrained = None if constrained is None else int(constrained)
                *grid, settings = point[r.key]
                summed = (*grid, r.status, r.reason, _real(r.acc_before_align), _real(r.acc_after_align),
                          _real(r.seconds), r.device, settings, constrained, r.engine)
                run_rows.append((r.status, r.reason, summed[9], summed[10], now, summed[11], r.device, constrained,
                                 r.engine, _checksum(summed, epochs, magnitudes), r.key))
                epoch_rows.extend((r.key, *e) for e in epochs)
                magnitude_rows.extend((r.key, *m) for m in magnitudes)
            self.db.executemany(
                """UPDATE runs SET status=?, reason=?, acc_before_align=?, acc_after_align=?, finished=?, seconds=?,
                   device=?, constrained=?, engine=?, checksum=? WHERE key=?""", run_rows)
            self.db.executemany("DELETE FROM epochs WHERE run = ?", [(k,) for k in keys])
            self.db.executemany(
                """INSERT INTO epochs (run, epoch, train_loss, train_acc, val_loss, val_acc, resets, sign_changes, wall)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""", epoch_rows)
            self.db.executemany("DELETE FROM magnitudes WHERE run = ?", [(k,) for k in keys])
            self.db.executemany("INSERT INTO magnitudes (run, layer, quantiles) VALUES (?, ?, ?)", magnitude_rows)

    @_guarded
    def counts(self) -> dict[str, int]:
        """Runs per status."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    # -- integrity ---------------------------------------------------------------------
    @_guarded
    def damaged_runs(self) -> list[str]:
        """Keys of finished runs whose stored numbers no longer match their checksum.

        Runs recorded before checksums existed (NULL) are not checked; each checksum is checked
        against the columns of its own version.
        """
        if self.readonly and "magnitudes" not in self._tables:
            return []
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
        if "checksum" not in columns:
            return []
        epochs: dict[str, list] = defaultdict(list)
        magnitudes: dict[str, list] = defaultdict(list)
        # a reader of a store written before the engine column (not upgraded: read-only) reads NULL
        summed = _RUN_SUMMED[2] if "engine" in columns else _RUN_SUMMED[2].replace("engine", "NULL")
        width = {v: len(cols.split(",")) for v, cols in _RUN_SUMMED.items()}
        with self._snapshot():  # a writer committing between the reads must not look like damage
            sums = {row[0]: row for row in self.db.execute(
                f"SELECT {summed}, checksum FROM runs WHERE checksum IS NOT NULL")}
            for row in self.db.execute(f"SELECT run, {_EPOCH_SUMMED} FROM epochs ORDER BY run, epoch"):
                if row[0] in sums:
                    epochs[row[0]].append(row[1:])
            for row in self.db.execute("SELECT run, layer, quantiles FROM magnitudes"):
                if row[0] in sums:
                    magnitudes[row[0]].append(row[1:])
        return sorted(k for k, row in sums.items()
                      if _checksum(row[: width.get(_version(row[-1]), 0)], epochs[k], magnitudes[k],
                                   _version(row[-1])) != row[-1])

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the database (a read transaction), whatever a writer does."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def verify(self) -> None:
        """Raise if any run's numbers fail their checksum (readers call this once).

        Raises:
            StoreError: naming the damaged runs and how to recover them.
        """
        if self._verified:
            return
        damaged = self.damaged_runs()
        if damaged:
            raise StoreError(f"{self.path}: {len(damaged)} run(s) no longer match their checksum (e.g. {damaged[0]}): "
                             f"the file was damaged or edited. Run the study into this folder again to train them "
                             f"again, or " + _RECOVER.format(path=self.path))
        self._verified = True

    def retrain_damaged(self) -> list[str]:
        """Send runs whose numbers fail their checksum back to be trained (writers call this).

        Returns:
            Their keys.
        """
        damaged = self.damaged_runs()
        if damaged:
            with self._transaction():
                self.db.executemany("UPDATE runs SET status='running', checksum=NULL WHERE key=?",
                                    [(k,) for k in damaged])
                self.db.executemany("DELETE FROM epochs WHERE run=?", [(k,) for k in damaged])
                self.db.executemany("DELETE FROM magnitudes WHERE run=?", [(k,) for k in damaged])
        return damaged

    # -- reading ---------------------------------------------------------------------
    @_guarded
    def runs(self):
        """All runs as a pandas DataFrame (one row per run)."""
        import pandas as pd

        self.verify()
        return pd.read_sql_query("SELECT * FROM runs ORDER BY condition, n_train, hidden, reset, trial", self.db)

    @_guarded
    def epochs(self):
        """Every epoch of every run, joined with the run's grid point, as a pandas DataFrame."""
        import pandas as pd

        self.verify()
        return pd.read_sql_query(
            """SELECT r.condition, r.n_train, r.hidden, r.reset, r.trial, r.frozen, r.status, e.*
               FROM epochs e JOIN runs r ON r.key = e.run ORDER BY r.condition, r.n_train, r.hidden, r.reset,
               r.trial, e.epoch""", self.db)

    @_guarded
    def magnitudes(self):
        """Initial |w| quantiles per run and layer (one column per quantile level), with the grid point;
        each run's layers in the model's order (``features.3`` before ``features.10`` and ``classifier``)."""
        import pandas as pd

        from .results import QUANTILES

        self.verify()
        frame = pd.read_sql_query(
            """SELECT r.condition, r.n_train, r.hidden, r.reset, r.trial, m.run, m.layer, m.quantiles
               FROM magnitudes m JOIN runs r ON r.key = m.run WHERE r.status = 'done'
               ORDER BY r.condition, r.n_train, r.trial, m.rowid""", self.db)  # layers in the model's order
        values = pd.DataFrame([json.loads(q) for q in frame.pop("quantiles")], columns=list(QUANTILES),
                              index=frame.index)
        return pd.concat([frame, values], axis=1)

    def _transaction(self):
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        return _Transaction(self.db, self.path)


class _Transaction:
    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise _store_error(self.path, e) from None

    def __exit__(self, kind: object, error: object, trace: object) -> bool:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        except sqlite3.DatabaseError as e:
            if kind is None:
                raise _store_error(self.path, e) from None
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.IntegrityError):
            raise _store_error(self.path, error) from None
        return False


#: how :func:`setting_differences` shows a setting that one side does not hold (an older store)
NOT_STORED = "(not stored)"


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys (``define_condition.mine.lr``); an empty table stays one key."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def setting_differences(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(setting, value in a, value in b)`` for every setting that differs, sorted; tables are
    compared field by field (``define_condition.mine.lr``), tuples and lists alike (both are JSON
    lists once stored); a setting only one side holds shows :data:`NOT_STORED` for the other;
    top-level keys in ``ignore`` are left out.

    Example:
        >>> setting_differences({"sizes": [8], "c": {"x": {"lr": 1}}}, {"sizes": (8,), "c": {"x": {"lr": 2}}})
        [('c.x.lr', 1, 2)]
    """
    def normal(settings: dict[str, Any]) -> dict[str, Any]:
        return _flatten(json.loads(json.dumps(settings, default=list, sort_keys=True)))

    left, right, skip = normal(a), normal(b), set(ignore)
    return [(key, left.get(key, NOT_STORED), right.get(key, NOT_STORED)) for key in sorted(set(left) | set(right))
            if key.split(".")[0] not in skip and left.get(key, NOT_STORED) != right.get(key, NOT_STORED)]


def _show(value: Any) -> str:
    return value if value == NOT_STORED else json.dumps(value, default=list) if value is not None else "unset"


def _free_name(folder: Path) -> str:
    """``folder-2`` (or the next number that doesn't exist yet)."""
    n = 2
    while folder.with_name(f"{folder.name}-{n}").exists():
        n += 1
    return str(folder.with_name(f"{folder.name}-{n}"))
