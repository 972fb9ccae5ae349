"""The results store: one SQLite file per study folder (``results.sqlite``).

Tables:

* ``study`` — key/value: the study's settings, the preset, the creation time.
* ``runs`` — one row per run: ``key`` (hash of its settings), grid point, ``status``
  (``running`` | ``done`` | ``failed``), ``reason``, accuracy before/after alignment,
  timings, device, host and software versions, the full settings as JSON.
* ``epochs`` — one row per run and epoch: train/validation loss and accuracy, resets,
  per-layer sign changes (JSON), wall time.
* ``magnitudes`` — per run and weight layer, the quantiles of ``|w|`` at initialisation
  (after alignment), at the levels of :data:`polarnet.experiments.results.QUANTILES`.

A run's epochs and its ``done``/``failed`` status are written in one transaction, so a
process killed at any instant leaves either a finished run or none: a run marked
``running`` is one that was interrupted, and is trained again on the next invocation.
The database runs in WAL mode; only the sweep's driver process writes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .plan import RunSpec
from .results import RunResult

__all__ = ["Store", "STORE_NAME", "software_versions"]

STORE_NAME = "results.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    condition TEXT NOT NULL, n_train INTEGER NOT NULL, hidden INTEGER NOT NULL,
    reset TEXT NOT NULL, trial INTEGER NOT NULL, frozen INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    reason TEXT, acc_before_align REAL, acc_after_align REAL,
    started REAL, finished REAL, seconds REAL,
    device TEXT, host TEXT, versions TEXT, settings TEXT NOT NULL
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


def software_versions() -> dict[str, str]:
    """Versions recorded with every run."""
    from .. import __version__

    return {"polarnet": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _finite(value: float | None, isfinite=math.isfinite) -> float | None:
    """nan and ±inf are stored as NULL (SQLite would turn nan into NULL anyway, inf into a REAL)."""
    return value if value is not None and isfinite(value) else None


_JSON = json.JSONEncoder(separators=(",", ":"))


class Store:
    """The SQLite store of one study folder.

    Example:
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp())
        >>> store.finished_keys()
        set()
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STORE_NAME
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(_SCHEMA)
        self._host, self._versions = socket.gethostname(), json.dumps(software_versions())

    @classmethod
    def existing(cls, folder: str | os.PathLike[str], hint: str = "polarnet run … --out FOLDER") -> Store:
        """Open the store of a folder that must already hold one (for reading results).

        Raises:
            ValueError: the folder has no ``results.sqlite``; the message says how to make one.
        """
        if not (Path(folder) / STORE_NAME).is_file():
            raise ValueError(f"{folder}: no {STORE_NAME}; run a study into it first ({hint.replace('FOLDER', str(folder))})")
        return cls(folder)

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- study ------------------------------------------------------------------
    def set_study(self, values: dict[str, Any]) -> None:
        """Save study-level facts (settings, preset, transfer reports…), JSON-encoded."""
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO study VALUES (?, ?)",
                                [(k, json.dumps(v, default=list)) for k, v in values.items()])

    def study(self) -> dict[str, Any]:
        """The study-level facts."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM study")}

    # -- runs ---------------------------------------------------------------------
    def finished_keys(self, include_failed: bool = True) -> set[str]:
        """Keys of runs that are done (and failed ones, by default): a resumed sweep skips them."""
        statuses = "('done', 'failed')" if include_failed else "('done')"
        return {k for (k,) in self.db.execute(f"SELECT key FROM runs WHERE status IN {statuses}")}

    def mark_running(self, specs: Iterable[RunSpec]) -> None:
        """Record that these runs started (an interrupted one stays ``running``)."""
        now = time.time()
        rows = [(s.key, s.condition.name, s.n_train, s.hidden, s.reset, s.trial, int(s.condition.frozen), now,
                 self._host, self._versions, json.dumps(s.settings(), default=list)) for s in specs]
        with self._transaction():
            self.db.executemany(
                """INSERT INTO runs (key, condition, n_train, hidden, reset, trial, frozen, status, started, host,
                   versions, settings) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET status='running', started=excluded.started, reason=NULL
                   WHERE runs.status IN ('running', 'failed')""", rows)

    def record(self, results: Sequence[RunResult]) -> None:
        """Write finished runs: epochs and final status together, atomically."""
        now = time.time()
        keys = [r.key for r in results]
        encode = _JSON.encode
        with self._transaction():
            known = set()
            for start in range(0, len(keys), 500):  # SQLite limits the number of parameters
                part = keys[start : start + 500]
                known.update(k for (k,) in self.db.execute(
                    f"SELECT key FROM runs WHERE key IN ({','.join('?' * len(part))})", part))
            missing = [k for k in keys if k not in known]
            if missing:
                raise KeyError(f"run {missing[0]} was never marked running; call mark_running first")
            self.db.executemany(
                """UPDATE runs SET status=?, reason=?, acc_before_align=?, acc_after_align=?, finished=?, seconds=?,
                   device=? WHERE key=?""",
                [(r.status, r.reason, _finite(r.acc_before_align), _finite(r.acc_after_align), now, r.seconds, r.device,
                  r.key) for r in results])
            self.db.executemany("DELETE FROM epochs WHERE run = ?", [(k,) for k in keys])
            self.db.executemany(
                "INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.key, e.epoch, _finite(e.train_loss), _finite(e.train_acc), _finite(e.val_loss), _finite(e.val_acc),
                  e.resets, encode(e.sign_changes), e.wall) for r in results for e in r.epochs])
            self.db.executemany("DELETE FROM magnitudes WHERE run = ?", [(k,) for k in keys])
            self.db.executemany(
                "INSERT INTO magnitudes VALUES (?, ?, ?)",
                [(r.key, layer, encode(q)) for r in results for layer, q in r.extra.get("init_magnitudes", {}).items()])

    def counts(self) -> dict[str, int]:
        """Runs per status."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    # -- reading ---------------------------------------------------------------------
    def runs(self):
        """All runs as a pandas DataFrame (one row per run)."""
        import pandas as pd

        return pd.read_sql_query("SELECT * FROM runs ORDER BY condition, n_train, hidden, reset, trial", self.db)

    def epochs(self):
        """Every epoch of every run, joined with the run's grid point, as a pandas DataFrame."""
        import pandas as pd

        return pd.read_sql_query(
            """SELECT r.condition, r.n_train, r.hidden, r.reset, r.trial, r.frozen, r.status, e.*
               FROM epochs e JOIN runs r ON r.key = e.run ORDER BY r.condition, r.n_train, r.hidden, r.reset,
               r.trial, e.epoch""", self.db)

    def magnitudes(self):
        """Initial |w| quantiles per run and layer (one column per quantile level), with the grid point."""
        import pandas as pd

        from .results import QUANTILES

        frame = pd.read_sql_query(
            """SELECT r.condition, r.n_train, r.hidden, r.reset, r.trial, m.run, m.layer, m.quantiles
               FROM magnitudes m JOIN runs r ON r.key = m.run WHERE r.status = 'done'
               ORDER BY r.condition, r.n_train, r.trial, m.layer""", self.db)
        values = pd.DataFrame([json.loads(q) for q in frame.pop("quantiles")], columns=list(QUANTILES),
                              index=frame.index)
        return pd.concat([frame, values], axis=1)

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
