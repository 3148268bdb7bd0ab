"""Keep the index true to the files on disk.

* :func:`reconcile` (every run start): remove the temporary files of interrupted writes, index
  whole frames the index missed (a crash between rename and insert), forget rows whose file is
  gone, and move damaged or misfit files aside to ``<library>/.quarantine/`` (never deleted).
* :func:`check_frames` (before frames are counted or combined): quarantine frames damaged since
  they were written (size, ``CHECKSUM``/``DATASUM``).
* :func:`open_index`: an index that fails ``PRAGMA quick_check`` is moved aside and rebuilt.
* :func:`rescan` (``calibd library rescan``): rebuild frames, runs and cells from FITS headers and
  the run manifests in ``<library>/.calibd/runs/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import IO
from typing import Any

from astropy.io import fits

from calibd.capture.errors import LibraryError
from calibd.capture.inputfile import read_input_text
from calibd.capture.library import checksum
from calibd.capture.library.atomic import is_temp
from calibd.capture.library.atomic import remove_leftovers
from calibd.capture.library.atomic import write_text
from calibd.capture.library.fitsio import disk_error
from calibd.capture.library.fitsio import read_complete_header
from calibd.capture.library.headermap import frame_row
from calibd.capture.library.headermap import master_kind
from calibd.capture.library.headermap import master_row
from calibd.capture.library.index import Index
from calibd.capture.library.index import IndexDamaged
from calibd.capture.library.layout import INDEX_NAME
from calibd.capture.library.layout import INDEX_SUFFIXES
from calibd.capture.library.layout import safe_part
from calibd.capture.library.masters_table import inputs_digest
from calibd.capture.textsafe import shown
from calibd.drivers.clock import Clock

log = logging.getLogger(__name__)

STATE_DIR = ".calibd"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a plan's 50,000 cells at about 300 bytes each: 15 MB
#: The index :func:`rescan` builds, renamed over the old one when complete.
REBUILDING = f"{INDEX_NAME}.rebuilding"
QUARANTINE_DIR = ".quarantine"


@dataclass
class ReconcileReport:
    partials_removed: int = 0  # temporary files of interrupted writes
    frames_added: int = 0
    rows_removed: int = 0
    quarantined: list[str] = field(default_factory=list)  # moved to .quarantine/
    excluded: list[str] = field(default_factory=list)  # damaged, could not be moved: not counted

    def __bool__(self) -> bool:
        return bool(self.partials_removed or self.frames_added or self.rows_removed
                    or self.quarantined or self.excluded)

    def summary(self) -> str:
        text = (f"{self.partials_removed} temporary file(s) removed, {self.frames_added} "
                f"frame(s) indexed from disk, {self.rows_removed} stale row(s) dropped, "
                f"{len(self.quarantined)} damaged file(s) quarantined")
        if self.excluded:
            text += f", {len(self.excluded)} damaged file(s) left in place and not counted"
        return text


def _fits_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(complete-looking .fits files, temporary files of interrupted writes) below ``root``;
    FITS files are not looked for in the state and quarantine folders."""
    fits_files: list[Path] = []
    temps: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != QUARANTINE_DIR]
        state = Path(folder).relative_to(root).parts[:1] == (STATE_DIR,)
        for name in files:
            p = Path(folder) / name
            if is_temp(p):
                temps.append(p)
            elif not state and name.lower().endswith((".fits", ".fit", ".fts")) \
                    and not name.startswith("."):
                fits_files.append(p)
    return fits_files, temps


def quarantine(root: Path, path: Path, reason: str) -> Path | None:
    """Move a damaged file to ``<library>/.quarantine/`` (same relative path; never deleted,
    never overwriting an earlier one). Returns where it went, or None when it cannot be moved
    (read-only folder): it is then left in place, logged, and the caller does not count it."""
    rel = path.relative_to(root)
    dest = root / QUARANTINE_DIR / rel
    if dest.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest = dest.with_name(f"{dest.stem}.{stamp}{dest.suffix}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, dest)
    except OSError as err:
        log.warning("damaged file %s (%s) cannot be moved to %s (%s): left in place and not "
                    "counted", rel, reason, QUARANTINE_DIR, err.strerror or err)
        return None
    log.warning("damaged file %s (%s) moved to %s", rel, reason, dest)
    return dest


CAMERA_SUBFOLDERS = ("Bias", "Darks", "Flats", "DarkFlats", "Masters")


def belongs_to(rel: Path, camera: str) -> bool:
    """True when ``rel`` (relative to the library) lies in ``camera``'s folders."""
    parts = rel.parts
    return any(parts[i] == camera and parts[i + 1] in CAMERA_SUBFOLDERS
               for i in range(len(parts) - 1))


def remove_temp_files(root: Path, camera: str | None = None) -> int:
    """Remove what interrupted atomic writes left (``.partial`` and the ``.part``/``.json.tmp``
    of earlier versions) in ``camera``'s folders (all, without it) and the state folder. Files
    still being written by another process are kept. Returns how many were removed."""
    _, temps = _fits_files(root)
    if camera is not None:
        mine = safe_part(camera)
        temps = [p for p in temps if belongs_to(p.relative_to(root), mine)
                 or p.relative_to(root).parts[:1] == (STATE_DIR,)]
    return remove_leftovers(temps)


def reconcile(index: Index, camera: str | None = None, *,
              shape: tuple[int, int] | None = None) -> ReconcileReport:
    """Make the index match the files — of ``camera`` only, when given, so that other cameras
    writing into the same library at the same time are left alone. Blocks on a walk of the
    library. Never deletes a complete frame.

    Temporary files are removed; rows whose file is gone are dropped; a frame file the index
    does not know is indexed only when it is whole (checksums, when it has them), is a calibd
    frame, has the image shape of its cell (``shape`` = the camera's unbinned (height, width)
    when no frame of the cell or camera is indexed yet) and is not a second file for a frame
    already indexed; otherwise it is quarantined.
    """
    root = index.root
    report = ReconcileReport()
    files, _ = _fits_files(root)
    report.partials_removed = remove_temp_files(root, camera)
    if camera is not None:
        mine = safe_part(camera)
        files = [p for p in files if belongs_to(p.relative_to(root), mine)]
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
            checksum.verify(path, full=True)
        except (ValueError, OSError) as err:
            if _looks_like_ours(path):
                _set_aside(root, path, rel, str(err), report)
            continue
        row = frame_row(header)
        if row["cell_key"] is None or row["run_id"] is None:
            continue  # not a calibd frame (masters, user files): leave it alone
        problem = _misfit(index, row, shape)
        if problem is not None:
            _set_aside(root, path, rel, problem, report)
            continue
        st = path.stat()
        row["path"] = rel
        row["bytes"] = st.st_size
        row["mtime_ns"] = st.st_mtime_ns
        index.add_frame(row)
        report.frames_added += 1
    return report


def _misfit(index: Index, row: dict[str, Any], shape: tuple[int, int] | None) -> str | None:
    """Why a calibd frame found on disk does not belong in the index, or None."""
    expected = index.frame_shape(row["run_id"], row["cell_key"], row["camera"], row["binning"])
    if expected is None and shape is not None and row["binning"] == 1:
        expected = shape
    got = (row["height"], row["width"])
    if expected is not None and got != expected:
        return (f"image {got[1]}x{got[0]} but the frames of its cell are "
                f"{expected[1]}x{expected[0]}")
    other = index.frame_path_at(row["run_id"], row["cell_key"], row["seq"])
    if other is not None:
        return f"a second file for frame {row['seq']} of its cell ({other})"
    return None


def _set_aside(root: Path, path: Path, rel: str, reason: str, report: ReconcileReport) -> None:
    if quarantine(root, path, reason) is not None:
        report.quarantined.append(rel)
    else:
        report.excluded.append(rel)


def _verify_threads(files: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(files, cpus, 4))


def _verify_one(item: tuple[str, Path, int]) -> str | None:
    """Verify one frame's checksums (reading all of it); None if it is sound, else why not."""
    path = item[1]
    try:
        if not checksum.verify(path, full=True):  # written before calibd wrote checksums
            read_complete_header(path)
    except (ValueError, OSError) as err:
        return str(err)
    return None


def check_frames(index: Index, *, run_id: int | None = None, cell_key: str | None = None,
                 full: bool = False) -> ReconcileReport:
    """Check the indexed frames of a run (and cell) against their files before they are
    counted or combined: a file whose size changed, or whose modification time changed and
    whose checksums do not match (every file with ``full``), or (for one cell) whose image shape
    is not its cell's, is quarantined and its row dropped, so the cell counts one frame less
    and the next run refills it exactly. Rows whose file is gone are dropped. Blocks: a stat
    per frame; a read of those it must verify."""
    root = index.root
    report = ReconcileReport()
    damaged: list[tuple[str, str]] = []
    gone: list[str] = []
    verified: dict[str, int] = {}
    to_verify: list[tuple[str, Path, int]] = []
    rows = index.frame_checks(run_id, cell_key)
    shapes = Counter((r["height"], r["width"]) for r in rows)
    common = shapes.most_common(1)[0][0] if cell_key is not None and shapes else None
    for r in rows:
        rel = str(r["path"])
        if common is not None and (r["height"], r["width"]) != common:
            damaged.append((rel, f"image {r['width']}x{r['height']} but the frames of its cell "
                                 f"are {common[1]}x{common[0]}"))
            continue
        path = root / rel
        try:
            st = path.stat()
        except FileNotFoundError:
            gone.append(rel)
            continue
        except OSError as err:
            damaged.append((rel, f"cannot be read: {err.strerror or err}"))
            continue
        if r["bytes"] is not None and st.st_size != int(r["bytes"]):
            damaged.append((rel, f"size changed from {r['bytes']} to {st.st_size} bytes"))
            continue
        if not full and r["mtime_ns"] is not None and st.st_mtime_ns == int(r["mtime_ns"]):
            continue
        to_verify.append((rel, path, st.st_mtime_ns))
    # Whole-file reads: a few threads at once (the reads and sums release the GIL).
    with ThreadPoolExecutor(max_workers=_verify_threads(len(to_verify))) as pool:
        for (rel, _, mtime), error in zip(to_verify, pool.map(_verify_one, to_verify),
                                          strict=True):
            if error is None:
                verified[rel] = mtime
            else:
                damaged.append((rel, error))
    if gone:
        index.remove_frames(gone)
        report.rows_removed = len(gone)
    if damaged:
        order = {str(r["path"]): i for i, r in enumerate(rows)}
        damaged.sort(key=lambda item: order[item[0]])  # in the index's order, as found
        index.remove_frames([rel for rel, _ in damaged])
        for rel, reason in damaged:
            _set_aside(root, root / rel, rel, reason, report)
    if verified:
        index.set_frame_mtimes(verified)
    return report


def _looks_like_ours(path: Path) -> bool:
    return "_r" in path.stem and path.stem.rsplit("-", 1)[-1].isdigit()


# ----- a damaged index -------------------------------------------------------------------------
def open_index(root: Path, *, held: str | None = None, clock: Clock | None = None) -> Index:
    """Open the library's index after an integrity check (``PRAGMA quick_check``). A damaged
    index is moved aside (``calibd.sqlite.damaged-<UTC time>``, with its ``-wal``/``-shm``) and
    rebuilt from the FITS headers and run manifests, with a warning. ``held``: the camera whose
    lock this process holds; ``clock``: the index's journal clock (see :class:`Index`). Raises
    LibraryError when it cannot be opened or rebuilt (another capture is running into the
    library, the disk is full, ...)."""
    try:
        return Index(root, clock, check=True)
    except IndexDamaged as err:
        log.warning("%s", err)
        log.warning("rebuilding the library index of %s from the FITS headers and run manifests",
                    root)
    with _all_camera_locks(root, held=held):
        counts = _rescan(root)
    log.warning("library index rebuilt: %d frame(s) in %d run(s), %d master(s); %d damaged "
                "file(s) skipped; the run journal's events are lost", counts["frames"],
                counts["runs"], counts["masters"], counts["damaged"])
    return Index(root, clock)


def open_index_readonly(root: Path) -> Index:
    """The index of a library that cannot (or must not) be written: read-only, no repair.
    Raises LibraryError (IndexDamaged with the way to repair it)."""
    return Index(root, readonly=True, check=True)


def open_existing(root: Path) -> Index:
    """The index of an existing library for a command: repaired when damaged (see
    :func:`open_index`), or read-only when the index or its folder cannot be written (then a
    damaged index is reported, not repaired). Raises LibraryError (no library, damaged, ...)."""
    db_path = root / INDEX_NAME
    if not db_path.is_file():
        raise LibraryError(f"no calibd library at {root} (no {INDEX_NAME})")
    if not (os.access(root, os.W_OK) and os.access(db_path, os.W_OK)):
        log.info("the library %s is read-only: opening its index read-only", root)
        return open_index_readonly(root)
    return open_index(root)


def move_aside(root: Path) -> Path:
    """Move a damaged index (and its ``-wal``/``-shm``, those first) out of the way; returns its
    new name."""
    db_path = root / INDEX_NAME
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = db_path.with_name(f"{INDEX_NAME}.damaged-{stamp}")
    for suffix in INDEX_SUFFIXES:
        src = Path(str(db_path) + suffix)
        if src.exists():
            try:
                os.rename(src, Path(str(aside) + suffix))
            except OSError as err:
                raise LibraryError(f"the library index {db_path} is damaged and cannot be moved "
                                   f"aside: {err.strerror or err}") from err
    log.warning("the damaged library index was moved to %s", aside)
    return aside


# ----- run manifests ---------------------------------------------------------------------------
def manifest_path(root: Path, run_id: int) -> Path:
    return root / STATE_DIR / "runs" / f"run-{run_id}.json"


def write_manifest(root: Path, run_id: int, manifest: dict[str, Any]) -> None:
    """Write the run's plan (name, camera, cells) atomically, for :func:`rescan`."""
    path = manifest_path(root, run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not fsynced (as before): a lost manifest is rebuilt from the frames' headers.
        write_text(path, json.dumps(manifest, indent=1, sort_keys=True), fsync=False)
    except OSError as err:
        raise disk_error(err, path) from err


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
    """Rebuild the index from the FITS files and run manifests (a damaged index is moved aside
    first). Returns counts. Raises LibraryError while a capture holds the library (the index
    must not change under it)."""
    with _all_camera_locks(root):
        return _rescan(root)


@contextlib.contextmanager
def _all_camera_locks(root: Path, held: str | None = None) -> Iterator[None]:
    """Every camera's capture lock except ``held`` (this process's own)."""
    locks: list[IO[str]] = []
    try:
        for path in sorted((root / STATE_DIR).glob("lock-*")):
            if held is not None and path.name == f"lock-{safe_part(held)}":
                continue
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in finally
            locks.append(fh)
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise LibraryError(f"a capture is running into {root} ({path.name[5:]}): stop "
                                   "it before rebuilding the index") from None
        yield
    finally:
        for lock in locks:
            lock.close()


def _remove_index(root: Path, name: str) -> None:
    """Delete the index ``name`` in ``root`` with its log and shared memory, the log first."""
    for suffix in INDEX_SUFFIXES:
        (root / f"{name}{suffix}").unlink(missing_ok=True)


def _rescan(root: Path) -> dict[str, int]:
    """Rebuild the index. The new one is built beside the old (:data:`REBUILDING`) and renamed
    over it only when complete: a rescan that fails, is stopped or killed leaves the old index
    as it was (its journal is carried over into the new one)."""
    db_path = root / INDEX_NAME
    _remove_index(root, REBUILDING)  # of a rescan killed before it finished
    events: list[tuple[Any, ...]] = []
    if db_path.exists():
        try:
            old = Index(root, check=True)
            try:
                events = old.all_events()
            finally:
                old.close()
        except IndexDamaged as err:
            log.warning("%s", err)
            move_aside(root)
    index = Index(root, name=REBUILDING)
    try:
        counts = _fill(index, root, events)
        index.seal()
    except BaseException:
        index.close()
        _remove_index(root, REBUILDING)
        raise
    index.close()
    try:
        # The old index's log goes first (a log left beside the new index would be replayed
        # into it); the rename then swaps the whole file at once.
        for suffix in INDEX_SUFFIXES[:-1]:
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        os.replace(root / REBUILDING, db_path)
    except OSError as err:
        raise LibraryError(f"the rebuilt index {root / REBUILDING} cannot replace {db_path}: "
                           f"{shown(err.strerror or err, 200)}") from err
    return counts


def _is_manifest(m: Any) -> bool:
    """What :func:`_fill` reads of a run manifest is there, of the right types."""
    return (isinstance(m, dict) and type(m.get("run_id")) is int
            and isinstance(m.get("plan_name"), str) and isinstance(m.get("camera"), str)
            and isinstance(m.get("cells"), list)
            and all(isinstance(c, dict) and isinstance(c.get("key"), str)
                    and type(c.get("count")) is int for c in m["cells"]))


def _fill(index: Index, root: Path, events: list[tuple[Any, ...]]) -> dict[str, int]:
    files, temps = _fits_files(root)
    remove_leftovers(temps)
    runs: dict[int, dict[str, Any]] = {}
    mdir = root / STATE_DIR / "runs"
    for mpath in sorted(mdir.glob("run-*.json")) if mdir.is_dir() else []:
        try:
            m = json.loads(read_input_text(mpath, MAX_MANIFEST_BYTES))
            if not _is_manifest(m):
                raise ValueError("not a run manifest of this calibd")
            runs[int(m["run_id"])] = m
        except (OSError, ValueError, RecursionError) as err:  # the shape is _is_manifest's
            log.warning("ignoring unreadable run manifest %s: %s", shown(mpath.name),
                        shown(str(err), 200))
    frames = 0
    damaged = 0
    masters: list[tuple[Path, fits.Header]] = []
    seen_runs: dict[int, dict[str, Any]] = {}
    for path in sorted(files):
        try:
            header = read_complete_header(path)
        except ValueError as err:  # its text names the file, made safe
            log.warning("skipping %s", err)
            damaged += 1
            continue
        try:
            if master_kind(header) is not None:
                masters.append((path, header))
                continue
            row = frame_row(header)
            if row["cell_key"] is None or row["run_id"] is None:
                continue
            row["path"] = path.relative_to(root).as_posix()
            row["bytes"] = path.stat().st_size
            index.add_frame(row)  # mtime_ns left empty: checked before it is counted
        except (ValueError, OverflowError, TypeError) as err:  # a value the index cannot hold
            log.warning("skipping %s: %s", shown(path.name), shown(str(err), 200))
            damaged += 1
            continue
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
        # The manifest's cells come first; cells only seen in headers after them.
        index.restore_cells(run_id, [
            *((c["key"], pos, c, c["count"]) for pos, c in enumerate(m["cells"] if m else [])),
            *((key, 10000 + pos, row, planned)
              for pos, (key, (row, planned)) in enumerate(seen.get("cells", {}).items()))])
        cells = index.cell_rows(run_id)
        # A run is complete only if it said so: cells decided at run time (dark flats) that
        # never got a frame are in no header.
        finished = (m or {}).get("state", "complete") == "complete"
        complete = finished and all(int(c["done"]) >= int(c["planned"]) for c in cells)
        index.mark_cells_complete(run_id, [c["cell_key"] for c in cells
                                           if int(c["done"]) >= int(c["planned"])])
        if complete:
            index.set_run_state(run_id, "complete")
    index.restore_events(events)
    for path, header in masters:
        try:
            _index_master(index, path, header)
        except (ValueError, OverflowError, TypeError) as err:
            log.warning("skipping %s: %s", shown(path.name), shown(str(err), 200))
            damaged += 1
    return {"frames": frames, "runs": len(set(runs) | set(seen_runs)), "damaged": damaged,
            "masters": len(masters)}


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
