"""What the library policy (:mod:`capture.library.policy`) asks the index: recorded
invalidations (kept in the ``events`` table, so a rebuilt index keeps them), the newest frame
of each cell, each camera's current serial and each run's flat sets (a mixin of
:class:`capture.library.index.Index`)."""

from __future__ import annotations

import json
from typing import Any

from calibd.capture.library.policy import Invalidation
from calibd.capture.library.runs_table import RunsTable

INVALIDATE = "invalidate"  # event kind


class ValidityQueries(RunsTable):
    def add_invalidation(self, reason: str, *, kind: str | None = None,
                         camera: str | None = None, filt: str | None = None,
                         gain: int | None = None) -> None:
        """Record that what matches (None = anything) and was taken before now is invalid."""
        self.event(None, "warning", INVALIDATE, reason,
                   data={"kind": kind, "camera": camera, "filter": filt, "gain": gain})

    def invalidations(self) -> list[Invalidation]:
        rows = self.query("SELECT time_utc, message, data FROM events WHERE kind=? ORDER BY id",
                          (INVALIDATE,))
        out = []
        for r in rows:
            try:
                d = json.loads(r["data"] or "{}")
            except ValueError:
                d = {}
            gain = d.get("gain")
            out.append(Invalidation(
                time_utc=str(r["time_utc"]), reason=str(r["message"]),
                kind=d.get("kind") if isinstance(d.get("kind"), str) else None,
                camera=d.get("camera") if isinstance(d.get("camera"), str) else None,
                filter=d.get("filter") if isinstance(d.get("filter"), str) else None,
                gain=gain if isinstance(gain, int) else None))
        return out

    def cell_newest(self, run_id: int) -> dict[str, tuple[str | None, str | None, str | None]]:
        """Per cell of the run: (newest DATE-OBS, camera, CAMERAID) of its frames."""
        rows = self.query('SELECT cell_key, MAX(date_obs) AS d, camera, camera_id FROM frames '
                          'WHERE run_id=? GROUP BY cell_key', (run_id,))
        return {str(r["cell_key"]): (r["d"], r["camera"], r["camera_id"]) for r in rows}

    def current_camera_ids(self) -> dict[str, str]:
        """Camera name -> the CAMERAID of its newest frame."""
        rows = self.query("SELECT camera, camera_id, MAX(date_obs) AS d FROM frames WHERE "
                          "camera IS NOT NULL AND camera_id IS NOT NULL GROUP BY camera")
        return {str(r["camera"]): str(r["camera_id"]) for r in rows}

    def flat_sets(self) -> dict[tuple[Any, ...], list[tuple[int | None, str]]]:
        """(camera, filter, binning, gain, offset) -> (run, newest frame date) per run (a
        sensor set's ladder replaces no flat set)."""
        rows = self.query('SELECT camera, filter, binning, gain, "offset", run_id, '
                          'MAX(date_obs) AS d FROM frames WHERE kind=? AND date_obs IS NOT NULL '
                          'AND sensor=0 GROUP BY camera, filter, binning, gain, "offset", run_id',
                          ("flat",))
        out: dict[tuple[Any, ...], list[tuple[int | None, str]]] = {}
        for r in rows:
            key = (r["camera"], r["filter"], r["binning"], r["gain"], r["offset"])
            out.setdefault(key, []).append((r["run_id"], str(r["d"])))
        return out

    def cell_captures(self, camera: str) -> list[dict[str, Any]]:
        """Every run cell of ``camera`` with its frames counted: run_id, cell_key, kind, gain,
        offset, binning, filter, planned, done, newest (DATE-OBS) and camera_id. A sensor
        set's frames are not counted (a bias pair holds no bias cell of the same key)."""
        rows = self.query(
            'SELECT rc.run_id, rc.cell_key, rc.kind, rc.gain, rc."offset" AS "offset", '
            "rc.binning, rc.filter, rc.planned, COUNT(f.id) AS done, MAX(f.date_obs) AS newest, "
            "MAX(f.camera_id) AS camera_id FROM run_cells rc JOIN runs r ON r.id = rc.run_id "
            "LEFT JOIN frames f ON f.run_id = rc.run_id AND f.cell_key = rc.cell_key "
            "AND f.sensor=0 "
            "WHERE r.camera = ? GROUP BY rc.run_id, rc.cell_key ORDER BY rc.run_id", (camera,))
        return [dict(r) for r in rows]
