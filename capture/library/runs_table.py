"""The run journal: runs, the cells each run planned with their state, and events (a mixin of
:class:`capture.library.index.Index`). Everything but the events can be rebuilt from the FITS
headers and run manifests (:mod:`capture.library.rescan`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calibd.capture.library.store import Store
from calibd.capture.library.store import utc_now_text
from calibd.capture.plans.cells import Cell

ACTIVE_STATES = ("running", "interrupted", "paused", "failed")


@dataclass(frozen=True)
class RunRow:
    id: int
    plan_name: str
    camera: str
    folder: str
    state: str
    reason: str | None
    started_utc: str
    finished_utc: str | None
    plan_digest: str | None


class RunsTable(Store):
    # ----- runs ------------------------------------------------------------------------------
    def find_open_run(self, plan_name: str, camera: str, folder: str) -> RunRow | None:
        """The newest unfinished run of this plan on this camera, if any."""
        rows = self.query(
            f"SELECT * FROM runs WHERE plan_name=? AND camera=? AND folder=? AND state IN "
            f"({','.join('?' * len(ACTIVE_STATES))}) ORDER BY id DESC LIMIT 1",
            (plan_name, camera, folder, *ACTIVE_STATES),
        )
        return _run(rows[0]) if rows else None

    def last_run(self, plan_name: str, camera: str, folder: str) -> RunRow | None:
        rows = self.query(
            "SELECT * FROM runs WHERE plan_name=? AND camera=? AND folder=? "
            "ORDER BY id DESC LIMIT 1", (plan_name, camera, folder))
        return _run(rows[0]) if rows else None

    def get_run(self, run_id: int) -> RunRow | None:
        rows = self.query("SELECT * FROM runs WHERE id=?", (run_id,))
        return _run(rows[0]) if rows else None

    def runs(self) -> list[RunRow]:
        return [_run(r) for r in self.query("SELECT * FROM runs ORDER BY id")]

    def create_run(self, plan_name: str, plan_path: str | None, digest: str | None, camera: str,
                   folder: str, *, run_id: int | None = None, started: str | None = None,
                   state: str = "running") -> int:
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO runs(id, plan_name, plan_path, plan_digest, camera, folder, state, "
                "started_utc, updated_utc) VALUES(?,?,?,?,?,?,?,?,?)",
                (run_id, plan_name, plan_path, digest, camera, folder, state,
                 started or utc_now_text(self.clock), utc_now_text(self.clock)),
            )
            return int(cur.lastrowid or 0)

    def set_run_state(self, run_id: int, state: str, reason: str | None = None) -> None:
        finished = utc_now_text(self.clock) if state == "complete" else None
        with self.tx() as db:
            db.execute("UPDATE runs SET state=?, reason=?, updated_utc=?, "
                       "finished_utc=COALESCE(?, finished_utc) WHERE id=?",
                       (state, reason, utc_now_text(self.clock), finished, run_id))

    def upsert_cells(self, run_id: int, cells: list[Cell]) -> None:
        """Record the run's planned cells (new cells added, planned counts updated)."""
        with self.tx() as db:
            for pos, c in enumerate(cells):
                db.execute(
                    "INSERT INTO run_cells(run_id, cell_key, position, kind, gain, \"offset\", "
                    "binning, readout_mode, setpoint_c, exposure_s, filter, planned) "
                    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, cell_key) DO UPDATE "
                    "SET planned=excluded.planned, position=excluded.position",
                    (run_id, c.key, pos, c.kind, c.gain, c.offset, c.binning, c.readout_mode,
                     c.setpoint_c, c.exposure_s, c.filter, c.count),
                )

    def reset_cells(self, run_id: int, keys: list[str]) -> None:
        """Mark these cells of the run pending again (one transaction)."""
        with self.tx() as db:
            db.executemany("UPDATE run_cells SET state='pending', reason=NULL WHERE run_id=? AND "
                           "cell_key=?", [(run_id, k) for k in keys])

    def set_cell_state(self, run_id: int, cell_key: str, state: str,
                       reason: str | None = None) -> None:
        with self.tx() as db:
            db.execute("UPDATE run_cells SET state=?, reason=? WHERE run_id=? AND cell_key=?",
                       (state, reason, run_id, cell_key))

    def cell_rows(self, run_id: int) -> list[sqlite3.Row]:
        return self.query(
            "SELECT rc.*, (SELECT COUNT(*) FROM frames f WHERE f.run_id=rc.run_id AND "
            "f.cell_key=rc.cell_key) AS done FROM run_cells rc WHERE rc.run_id=? "
            "ORDER BY rc.position", (run_id,))

    def done_by_cell(self, run_id: int) -> dict[str, tuple[int, int]]:
        """cell key -> (frames done, highest sequence number)."""
        rows = self.query("SELECT cell_key, COUNT(*) AS n, MAX(seq) AS top FROM frames "
                          "WHERE run_id=? GROUP BY cell_key", (run_id,))
        return {r["cell_key"]: (int(r["n"]), int(r["top"] or 0)) for r in rows}

    # ----- events ----------------------------------------------------------------------------
    def event(self, run_id: int | None, level: str, kind: str, message: str,
              cell_key: str | None = None, data: Mapping[str, Any] | None = None) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO events(run_id, time_utc, level, kind, cell_key, message, "
                       "data) VALUES(?,?,?,?,?,?,?)",
                       (run_id, utc_now_text(self.clock), level, kind, cell_key, message,
                        json.dumps(data) if data else None))

    def events(self, run_id: int, kind: str | None = None) -> list[sqlite3.Row]:
        if kind is None:
            return self.query("SELECT * FROM events WHERE run_id=? ORDER BY id", (run_id,))
        return self.query("SELECT * FROM events WHERE run_id=? AND kind=? ORDER BY id",
                          (run_id, kind))


    def all_events(self) -> list[tuple[Any, ...]]:
        """Every event as (run_id, time_utc, level, kind, cell_key, message, data), for
        :meth:`restore_events` into a rebuilt index."""
        return [tuple(r) for r in self.query(
            "SELECT run_id, time_utc, level, kind, cell_key, message, data FROM events")]

    def restore_events(self, events: list[tuple[Any, ...]]) -> None:
        """Put back the events :meth:`all_events` returned (one transaction)."""
        with self.tx() as db:
            db.executemany("INSERT INTO events(run_id, time_utc, level, kind, cell_key, message, "
                           "data) VALUES(?,?,?,?,?,?,?)", events)

    def restore_cells(self, run_id: int,
                      cells: list[tuple[str, int, Mapping[str, Any], int]]) -> None:
        """Cells of a rebuilt run: (key, position, values, planned) with the cell's settings in
        ``values`` (a manifest entry or a frame row); a key already there is kept (the first
        wins). One transaction."""
        with self.tx() as db:
            for key, position, v, planned in cells:
                db.execute(
                    "INSERT OR IGNORE INTO run_cells(run_id, cell_key, position, kind, gain, "
                    '"offset", binning, readout_mode, setpoint_c, exposure_s, filter, planned) '
                    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    (run_id, key, position, v["kind"], v["gain"], v["offset"], v["binning"],
                     v["readout_mode"], v["setpoint_c"], v["exposure_s"], v.get("filter"),
                     planned))

    def mark_cells_complete(self, run_id: int, keys: list[str]) -> None:
        """Set these cells of the run complete (one transaction)."""
        with self.tx() as db:
            db.executemany("UPDATE run_cells SET state='complete' WHERE run_id=? AND "
                           "cell_key=?", [(run_id, k) for k in keys])


def _run(row: sqlite3.Row) -> RunRow:
    return RunRow(id=int(row["id"]), plan_name=row["plan_name"], camera=row["camera"],
                  folder=row["folder"], state=row["state"], reason=row["reason"],
                  started_utc=row["started_utc"], finished_utc=row["finished_utc"],
                  plan_digest=row["plan_digest"])
