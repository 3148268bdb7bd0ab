"""What the web view shows besides the status: cooler history (kept in memory by the daemon)
and the library view (coverage cells, masters, journal) read through named Index methods."""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from calibd.capture.library.index import Index
from calibd.capture.sequencer.status import RunStatus

HISTORY_POINTS = 720  # per camera: 12 h at one point a minute
HISTORY_EVERY_S = 60.0  # clock seconds between two points of one camera
RUNS_SHOWN = 10  # the latest runs in the coverage and the journal
JOURNAL_MAX = 200  # journal entries (newest)
MASTERS_MAX = 300


class CoolerHistory:
    """Per camera, the sensor temperature, set-point and cooler power over the last hours
    (clock time), one point per :data:`HISTORY_EVERY_S` at most. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._points: dict[str, deque[dict[str, Any]]] = {}
        self._last: dict[str, datetime] = {}

    def add(self, camera: str, status: RunStatus, now: datetime) -> None:
        if status.temperature_c is None:
            return
        with self._lock:
            last = self._last.get(camera)
            if last is not None and (now - last).total_seconds() < HISTORY_EVERY_S:
                return
            self._last[camera] = now
            self._points.setdefault(camera, deque(maxlen=HISTORY_POINTS)).append({
                "t": now.isoformat(), "temperature_c": status.temperature_c,
                "setpoint_c": status.setpoint_c, "power_pct": status.power_pct})

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {cam: list(points) for cam, points in self._points.items()}


def library_view(root: Path) -> dict[str, Any]:
    """Coverage cells of the latest runs (state, frames, master), the current masters and the
    journal (rejections, skipped cells, pauses...), newest first. Raises LibraryError."""
    index = Index(root)
    try:
        runs = index.runs()[-RUNS_SHOWN:]
        masters = index.masters()
        by_cell = {(m.run_id, m.cell_key): m.path for m in masters if m.current}
        cells: list[dict[str, Any]] = []
        journal: list[dict[str, Any]] = []
        for run in runs:
            for r in index.cell_rows(run.id):
                cells.append({
                    "run": run.id, "camera": run.camera, "plan": run.plan_name,
                    "kind": r["kind"], "gain": r["gain"], "offset": r["offset"],
                    "binning": r["binning"], "setpoint_c": r["setpoint_c"],
                    "exposure_s": r["exposure_s"], "filter": r["filter"],
                    "state": r["state"], "planned": r["planned"], "done": r["done"],
                    "reason": r["reason"], "updated": run.finished_utc or run.started_utc,
                    "master": by_cell.get((run.id, r["cell_key"]))})
            for e in index.events(run.id):
                journal.append({"run": run.id, "time": e["time_utc"], "level": e["level"],
                                "kind": e["kind"], "cell": e["cell_key"],
                                "message": e["message"][:300]})
        shown = [m for m in masters if m.current][-MASTERS_MAX:]
        return {
            "runs": [{"id": r.id, "plan": r.plan_name, "camera": r.camera, "state": r.state,
                      "reason": r.reason, "started": r.started_utc, "finished": r.finished_utc}
                     for r in runs],
            "cells": cells,
            "masters": [{"kind": m.kind, "camera": m.camera, "gain": m.gain,
                         "offset": m.offset, "binning": m.binning,
                         "setpoint_c": m.setpoint_c, "exposure_s": m.exposure_s,
                         "filter": m.filter, "frames": m.ncombine, "created": m.created_utc,
                         "path": m.path, "calibration": m.calibration} for m in shown],
            "journal": sorted(journal, key=lambda e: str(e["time"]), reverse=True)[:JOURNAL_MAX],
        }
    finally:
        index.close()
