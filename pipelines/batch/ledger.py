"""The run ledger: one SQLite file in the output folder recording every task's state, timing and error.

A task is identified by its kind and scope (``measure:P001:2024-01-02``,
``assess:P001``); its row is updated in place on every run, so the ledger
says where a run is, and where an interrupted run stopped.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    date        TEXT,
    cache_key   TEXT,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'cached', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,
    error       TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  REAL NOT NULL,
    finished_at REAL,
    config_hash TEXT NOT NULL,
    n_failed    INTEGER
);
"""


def _timed(method):
    """Adds the method's wall time to ``self.seconds`` (the ledger's share of a run's overhead)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    return wrapper


class Ledger:
    """Task states of a run folder, in ``<output_dir>/ledger.sqlite``.

    ``disclose``: what the file may show of a task id, patient id or error (the run's
    :meth:`pipelines.outputs.privacy.Pseudonymiser.text`); callers pass the archive's own ids.
    """

    def __init__(self, path: Path, disclose: Callable[[str], str] = str) -> None:
        self._disclose = disclose
        self.seconds = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every state change is durable at once, so a SIGKILL loses at most the task in hand.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @_timed
    def start_run(self, config_hash: str) -> int:
        cur = self._db.execute("INSERT INTO runs (started_at, config_hash) VALUES (?, ?)", (time.time(), config_hash))
        return int(cur.lastrowid or 0)

    @_timed
    def finish_run(self, run_id: int, n_failed: int) -> None:
        self._db.execute("UPDATE runs SET finished_at = ?, n_failed = ? WHERE run_id = ?", (time.time(), n_failed, run_id))

    @_timed
    def register(self, task_id: str, kind: str, patient_id: str, date: str | None, cache_key: str | None) -> None:
        self._db.execute(
            """INSERT INTO tasks (task_id, kind, patient_id, date, cache_key, state) VALUES (?, ?, ?, ?, ?, 'pending')
               ON CONFLICT(task_id) DO UPDATE SET cache_key = excluded.cache_key,
                   state = CASE WHEN tasks.cache_key IS excluded.cache_key AND tasks.state IN ('done', 'cached')
                                THEN tasks.state ELSE 'pending' END""",
            (self._disclose(task_id), kind, self._disclose(patient_id), date, cache_key),
        )

    @_timed
    def running(self, task_id: str) -> None:
        self._db.execute(
            "UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = ?, error = NULL WHERE task_id = ?",
            (time.time(), self._disclose(task_id)),
        )

    @_timed
    def done(self, task_id: str, seconds: float, *, cached: bool = False) -> None:
        self._db.execute(
            "UPDATE tasks SET state = ?, finished_at = ?, seconds = ?, error = NULL WHERE task_id = ?",
            ("cached" if cached else "done", time.time(), seconds, self._disclose(task_id)),
        )

    @_timed
    def failed(self, task_id: str, seconds: float, error: str) -> None:
        self._db.execute(
            "UPDATE tasks SET state = 'failed', finished_at = ?, seconds = ?, error = ? WHERE task_id = ?",
            (time.time(), seconds, self._disclose(error), self._disclose(task_id)),
        )

    def states(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT task_id, state FROM tasks").fetchall())
