"""Keep the index true to the files on disk.

* :func:`reconcile` (every run start): remove leftover ``.partial`` files, index complete frames the
  index missed (a crash between rename and insert), forget rows whose file is gone, and move
  damaged files aside to ``<library>/.quarantine/`` (never deleted).
* :func:`rescan` (``calibd library rescan``): rebuild frames, runs and cells from FITS headers and
  the run manifests in ``<library>/.calibd/runs/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from astropy.io import fits

from capture.errors import LibraryError
from capture.library.fitsio import read_complete_header
from capture.library.headermap import frame_row, master_kind, master_row
from capture.library.index import Index
from capture.library.layout import INDEX_NAME, is_partial, safe_part
from capture.library.masters_table import inputs_digest

log = logging.getLogger(__name__)

STATE_DIR = ".calibd"
QUARANTINE_DIR = ".quarantine"


@dataclass
class ReconcileReport:
    partials_removed: int = 0
    frames_added: int = 0
    rows_removed: int = 0
    quarantined: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.partials_removed or self.frames_added or self.rows_removed
                    or self.quarantined)

    def summary(self) -> str:
        return (f"{self.partials_removed} partial file(s) removed, {self.frames_added} frame(s) "
                f"indexed from disk, {self.rows_removed} stale row(s) dropped, "
                f"{len(self.quarantined)} damaged file(s) quarantined")


def _fits_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(complete-looking .fits files, .partial files) below ``root``, skipping state folders."""
    fits_files: list[Path] = []
    partials: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (STATE_DIR, QUARANTINE_DIR)]
        for name in files:
            p = Path(folder) / name
            if is_partial(p):
                partials.append(p)
            elif name.lower().endswith((".fits", ".fit", ".fts")) and not name.startswith("."):
                fits_files.append(p)
    return fits_files, partials


def quarantine(root: Path, path: Path) -> Path:
    dest = root / QUARANTINE_DIR / path.relative_to(root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), dest)
    return dest


CAMERA_SUBFOLDERS = ("Bias", "Darks", "Flats", "DarkFlats", "Masters")


def belongs_to(rel: Path, camera: str) -> bool:
    """True when ``rel`` (relative to the library) lies in ``camera``'s folders."""
    parts = rel.parts
    return any(parts[i] == camera and parts[i + 1] in CAMERA_SUBFOLDERS
               for i in range(len(parts) - 1))


def reconcile(index: Index, camera: str | None = None) -> ReconcileReport:
    """Make the index match the files — of ``camera`` only, when given, so that other cameras
    writing into the same library at the same time are left alone. Blocks on a walk of the
    library. Never deletes a complete frame."""
    root = index.root
    report = ReconcileReport()
    files, partials = _fits_files(root)
    if camera is not None:
        mine = safe_part(camera)
        files = [p for p in files if belongs_to(p.relative_to(root), mine)]
        partials = [p for p in partials if belongs_to(p.relative_to(root), mine)]
    for p in partials:
        try:
            p.unlink()
            report.partials_removed += 1
        except OSError as err:
            log.warning("cannot remove leftover %s: %s", p, err)
    known = index.frame_paths()
    if camera is not None:
        known = {k for k in known if belongs_to(Path(k), safe_part(camera))}
    on_disk = {p.relative_to(root).as_posix(): p for p in files}
    stale = sorted(known - on_disk.keys())
    if stale:
        index.remove_frames(stale)
        report.rows_removed = len(stale)
    for rel, path in sorted(on_disk.items()):
        if rel in known:
            continue
        try:
            header = read_complete_header(path)
        except ValueError as err:
            if _looks_like_ours(path):
                dest = quarantine(root, path)
                log.warning("damaged frame moved to %s: %s", dest, err)
                report.quarantined.append(rel)
            continue
        row = frame_row(header)
        if row["cell_key"] is None or row["run_id"] is None:
            continue  # not a calibd frame (masters, user files): leave it alone
        row["path"] = rel
        row["bytes"] = path.stat().st_size
        index.add_frame(row)
        report.frames_added += 1
    return report


def _looks_like_ours(path: Path) -> bool:
    return "_r" in path.stem and path.stem.rsplit("-", 1)[-1].isdigit()


# ----- run manifests ---------------------------------------------------------------------------
def manifest_path(root: Path, run_id: int) -> Path:
    return root / STATE_DIR / "runs" / f"run-{run_id}.json"


def write_manifest(root: Path, run_id: int, manifest: dict[str, Any]) -> None:
    """Write the run's plan (name, camera, cells) atomically, for :func:`rescan`."""
    path = manifest_path(root, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def update_manifest(root: Path, run_id: int, **changes: Any) -> None:
    """Change some fields of a run's manifest (``state``, ``cells``); no-op without one."""
    path = manifest_path(root, run_id)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    manifest.update(changes)
    write_manifest(root, run_id, manifest)


def rescan(root: Path) -> dict[str, int]:
    """Rebuild the index from the FITS files and run manifests. Returns counts. Raises
    LibraryError while a capture holds the library (the index must not change under it)."""
    with _all_camera_locks(root):
        return _rescan(root)


@contextlib.contextmanager
def _all_camera_locks(root: Path) -> Iterator[None]:
    held: list[IO[str]] = []
    try:
        for path in sorted((root / STATE_DIR).glob("lock-*")):
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in finally
            held.append(fh)
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise LibraryError(f"a capture is running into {root} ({path.name[5:]}): stop "
                                   "it before rebuilding the index") from None
        yield
    finally:
        for lock in held:
            lock.close()


def _rescan(root: Path) -> dict[str, int]:
    db_path = root / INDEX_NAME
    events: list[tuple[Any, ...]] = []
    if db_path.exists():
        old = Index(root)
        events = [tuple(r) for r in old.query(
            "SELECT run_id, time_utc, level, kind, cell_key, message, data FROM events")]
        old.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    index = Index(root)
    files, partials = _fits_files(root)
    for p in partials:
        p.unlink(missing_ok=True)
    runs: dict[int, dict[str, Any]] = {}
    mdir = root / STATE_DIR / "runs"
    for mpath in sorted(mdir.glob("run-*.json")) if mdir.is_dir() else []:
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
            runs[int(m["run_id"])] = m
        except (OSError, ValueError, KeyError) as err:
            log.warning("ignoring unreadable run manifest %s: %s", mpath, err)
    frames = 0
    damaged = 0
    masters: list[tuple[Path, fits.Header]] = []
    seen_runs: dict[int, dict[str, Any]] = {}
    for path in sorted(files):
        try:
            header = read_complete_header(path)
        except ValueError as err:
            log.warning("skipping %s", err)
            damaged += 1
            continue
        if master_kind(header) is not None:
            masters.append((path, header))
            continue
        row = frame_row(header)
        if row["cell_key"] is None or row["run_id"] is None:
            continue
        row["path"] = path.relative_to(root).as_posix()
        row["bytes"] = path.stat().st_size
        index.add_frame(row)
        frames += 1
        seen_runs.setdefault(int(row["run_id"]), {
            "plan_name": header.get("PLANNAME", "unknown"), "camera": row["camera"] or "",
            "started": row["date_obs"], "cells": {}})["cells"].setdefault(
            row["cell_key"], (row, int(header.get("CELLN", 0))))
    for run_id in sorted(set(runs) | set(seen_runs)):
        m = runs.get(run_id)
        seen = seen_runs.get(run_id, {})
        name = m["plan_name"] if m else seen.get("plan_name", "unknown")
        camera = m["camera"] if m else seen.get("camera", "")
        folder = m.get("folder", "") if m else ""
        index.create_run(name, m.get("plan_path") if m else None,
                         m.get("plan_digest") if m else None, camera, folder, run_id=run_id,
                         started=(m or {}).get("started_utc") or seen.get("started"),
                         state="interrupted")
        with index.tx() as db:
            if m:
                for pos, c in enumerate(m["cells"]):
                    _insert_cell(db, run_id, c["key"], pos, c, c["count"])
            for pos, (key, (row, planned)) in enumerate(seen.get("cells", {}).items()):
                _insert_cell(db, run_id, key, 10000 + pos, row, planned)
        cells = index.cell_rows(run_id)
        # A run is complete only if it said so: cells decided at run time (dark flats) that
        # never got a frame are in no header.
        finished = (m or {}).get("state", "complete") == "complete"
        complete = finished and all(int(c["done"]) >= int(c["planned"]) for c in cells)
        with index.tx() as db:
            for c in cells:
                if int(c["done"]) >= int(c["planned"]):
                    db.execute("UPDATE run_cells SET state='complete' WHERE run_id=? AND "
                               "cell_key=?", (run_id, c["cell_key"]))
        if complete:
            index.set_run_state(run_id, "complete")
    with index.tx() as db:
        db.executemany("INSERT INTO events(run_id, time_utc, level, kind, cell_key, message, data)"
                       " VALUES(?,?,?,?,?,?,?)", events)
    for path, header in masters:
        _index_master(index, path, header)
    return {"frames": frames, "runs": len(set(runs) | set(seen_runs)), "damaged": damaged,
            "masters": len(masters)}


def _insert_cell(db: sqlite3.Connection, run_id: int, key: str, position: int,
                 values: dict[str, Any], planned: int) -> None:
    """A run cell from a manifest entry or a frame row (the manifest's cells come first)."""
    db.execute(
        "INSERT OR IGNORE INTO run_cells(run_id, cell_key, position, kind, gain, \"offset\", "
        "binning, readout_mode, setpoint_c, exposure_s, filter, planned) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
        (run_id, key, position, values["kind"], values["gain"], values["offset"],
         values["binning"], values["readout_mode"], values["setpoint_c"],
         values["exposure_s"], values.get("filter"), planned))


def _index_master(index: Index, path: Path, header: fits.Header) -> None:
    """Re-create a master's index row from its header. Its input set is taken to be the cell's
    current frames when the counts agree (else the master will count as stale)."""
    run_id, cell_key = header.get("SRCRUN"), header.get("SRCCELL")
    digest = None
    if run_id is not None and cell_key is not None:
        paths = index.frame_paths(run_id, cell_key)
        if paths and len(paths) == header.get("NCOMBINE"):
            digest = inputs_digest(sorted(paths))
    index.upsert_master(master_row(header, path=path.relative_to(index.root).as_posix(),
                                   inputs_digest=digest))
