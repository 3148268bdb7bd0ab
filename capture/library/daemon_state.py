"""The daemon's own small state (``<state_dir>/daemon.sqlite``): which runs were under way (to
resume them after a stop, crash or power cut), which cameras an operator paused, and when each
schedule fired (in clock time). Used by :mod:`capture.daemon.service`; it lives here because
calibd's SQL lives in ``capture/library`` only (APScheduler's job store is the scheduler's own)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS active(
    camera TEXT NOT NULL, plan TEXT NOT NULL, source TEXT NOT NULL, requested_utc TEXT NOT NULL,
    PRIMARY KEY(camera, plan)
);
CREATE TABLE IF NOT EXISTS paused(camera TEXT PRIMARY KEY, reason TEXT);
CREATE TABLE IF NOT EXISTS fires(
    id INTEGER PRIMARY KEY, schedule TEXT NOT NULL, fired_utc TEXT NOT NULL, note TEXT
);
"""


@dataclass(frozen=True)
class ActiveRun:
    camera: str
    plan: str
    source: str
    requested_utc: str


class DaemonState:
    """Thread-safe: one connection shared under a lock (WAL). Request threads of the API come
    and go; a connection per thread would leave a database and WAL descriptor behind with each
    of them."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "daemon.sqlite"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(paused)")}
        if "reason" not in columns:
            self._conn.execute("ALTER TABLE paused ADD COLUMN reason TEXT")  # state before 0.2

    def _db(self) -> _Locked:
        return _Locked(self._conn, self._lock)

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            self._conn.close()

    def add_active(self, run: ActiveRun) -> None:
        self._db().execute("INSERT OR REPLACE INTO active VALUES(?,?,?,?)",
                           (run.camera, run.plan, run.source, run.requested_utc))

    def remove_active(self, camera: str, plan: str) -> None:
        self._db().execute("DELETE FROM active WHERE camera=? AND plan=?", (camera, plan))

    def active(self) -> list[ActiveRun]:
        rows = self._db().execute("SELECT camera, plan, source, requested_utc FROM active "
                                  "ORDER BY requested_utc")
        return [ActiveRun(*r) for r in rows]

    def set_paused(self, camera: str, paused: bool, reason: str | None = None) -> None:
        if paused:
            self._db().execute("INSERT OR REPLACE INTO paused(camera, reason) VALUES(?,?)",
                               (camera, reason))
        else:
            self._db().execute("DELETE FROM paused WHERE camera=?", (camera,))

    def paused(self) -> dict[str, str | None]:
        """Paused cameras and why (None: no reason recorded)."""
        return {r[0]: r[1] for r in self._db().execute("SELECT camera, reason FROM paused")}

    def record_fire(self, schedule: str, fired_utc: str, note: str = "") -> None:
        self._db().execute("INSERT INTO fires(schedule, fired_utc, note) VALUES(?,?,?)",
                           (schedule, fired_utc, note))

    def fires(self) -> list[tuple[str, str, str]]:
        return [(r[0], r[1], r[2] or "") for r in self._db().execute(
            "SELECT schedule, fired_utc, note FROM fires ORDER BY id")]


class _Locked:
    """``execute`` on the shared connection under its lock; rows are fetched inside it."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()
