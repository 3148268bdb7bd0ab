"""What the web view shows besides the status: cooler history (kept in memory by the daemon)
and the library view (coverage cells, masters, journal) read through named Index methods."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
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
            "masters": [{"id": m.id, "kind": m.kind, "camera": m.camera, "gain": m.gain,
                         "offset": m.offset, "binning": m.binning,
                         "setpoint_c": m.setpoint_c, "exposure_s": m.exposure_s,
                         "filter": m.filter, "frames": m.ncombine, "created": m.created_utc,
                         "path": m.path, "calibration": m.calibration} for m in shown],
            "journal": sorted(journal, key=lambda e: str(e["time"]), reverse=True)[:JOURNAL_MAX],
        }
    finally:
        index.close()


THUMB_MAX_PX = 480  # longest side of a master's thumbnail


def thumbnail_png(path: Path) -> bytes:
    """A stretched grey thumbnail of a master or bad pixel map (8-bit PNG, at most
    :data:`THUMB_MAX_PX` on its longest side, every n-th pixel). Reads the FITS through a
    memory map (float masters are not loaded whole). Raises ValueError for a file that is not
    a 2-D FITS image, OSError when it cannot be read."""
    import numpy as np
    from astropy.io import fits

    # Unscaled: the stretch is the same for BZERO/BSCALE > 0 data, and it stays memory-mapped.
    with fits.open(path, memmap=True, lazy_load_hdus=True,
                   do_not_scale_image_data=True) as hdul:
        hdu = hdul[0]
        if hdu.header.get("NAXIS") != 2:
            raise ValueError(f"{path.name} is not a 2-D image")
        height, width = int(hdu.header["NAXIS2"]), int(hdu.header["NAXIS1"])
        step = max(1, -(-max(height, width) // THUMB_MAX_PX))
        sample = np.array(hdu.data[::step, ::step], dtype=np.float64)  # copied off the map
        is_map = hdu.header.get("IMAGETYP") == "Bad Pixel Map"
    if is_map:
        grey = np.where(sample > 0, 255, 0).astype(np.uint8)
    else:
        finite = sample[np.isfinite(sample)]
        lo, hi = (np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0))
        scaled = np.clip((np.nan_to_num(sample, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
        grey = (np.arcsinh(10 * scaled) / np.arcsinh(10) * 255).astype(np.uint8)
    return _png(grey)


def _png(grey: Any) -> bytes:
    """An 8-bit greyscale PNG of a 2-D uint8 array."""
    import struct
    import zlib

    height, width = grey.shape
    raw = b"".join(b"\x00" + grey[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


class Thumbnails:
    """Thumbnails of the library's masters by id, cached by file and modification time; one
    built at a time."""

    def __init__(self, root: Callable[[], Path]) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], bytes] = {}

    def get(self, master_id: int) -> bytes | None:
        """The PNG of master ``master_id``; None when there is no such master or file."""
        root = self._root()
        index = Index(root)
        try:
            found = next((m for m in index.masters() if m.id == master_id), None)
        finally:
            index.close()
        if found is None:
            return None
        path = root / found.path
        try:
            key = (found.path, path.stat().st_mtime_ns)
        except OSError:
            return None
        with self._lock:
            if key not in self._cache:
                if len(self._cache) >= 64:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = thumbnail_png(path)
            return self._cache[key]
