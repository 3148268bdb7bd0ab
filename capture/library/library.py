"""The calibration library as the sequencer uses it: one folder, one index, one lock per camera.

Opening a library for capture takes an exclusive lock for the camera (two processes never drive
the same camera into the same library), reconciles the index with the disk, and finds or starts
the run for a plan. A run of the same plan on the same camera resumes until it is complete.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any

from calibd.capture.closeable import Closeable
from calibd.capture.errors import LibraryError
from calibd.capture.library.fitsio import FrameContext
from calibd.capture.library.fitsio import build_header
from calibd.capture.library.fitsio import frame_cards
from calibd.capture.library.headermap import frame_row
from calibd.capture.library.index import Index
from calibd.capture.library.layout import camera_root
from calibd.capture.library.layout import frame_dir
from calibd.capture.library.layout import frame_name
from calibd.capture.library.layout import safe_part
from calibd.capture.library.rescan import STATE_DIR
from calibd.capture.library.rescan import ReconcileReport
from calibd.capture.library.rescan import check_frames
from calibd.capture.library.rescan import open_index
from calibd.capture.library.rescan import reconcile
from calibd.capture.library.rescan import update_manifest
from calibd.capture.library.rescan import write_manifest
from calibd.capture.library.runs_table import RunRow
from calibd.capture.library.writer import WriteJob
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.resolve import ResolvedPlan
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import Frame

log = logging.getLogger(__name__)

HEADER_ALLOWANCE = 2 * 2880


@dataclass
class RunHandle:
    run_id: int
    resumed: bool
    done: dict[str, tuple[int, int]]  # cell key -> (frames on disk, highest sequence number)
    previous_state: str | None = None


class Library(Closeable):
    """An open library. Use :meth:`open` and :meth:`close` (or ``with``)."""

    def __init__(self, root: Path, index: Index, lock_file: IO[str] | None) -> None:
        self.root = root
        self.index = index
        self._lock_file = lock_file
        self.reconciled: ReconcileReport | None = None

    @classmethod
    def open(cls, root: Path, *, camera: str | None = None, clock: Clock | None = None,
             info: CameraInfo | None = None) -> Library:
        """Open (creating if needed). With ``camera``, lock it for capture and reconcile
        (``info``: the camera's, for the image shape its frames must have). ``clock``: the
        capture clock the run journal is stamped with (as the frames are). A damaged index is
        moved aside and rebuilt (:func:`capture.library.rescan.open_index`).

        Raises LibraryError if the folder is unusable or another process holds the lock.
        """
        root = root.expanduser().resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LibraryError(f"cannot create the library folder {root}: {err}") from err
        if not os.access(root, os.W_OK):
            raise LibraryError(f"the library folder {root} is not writable")
        lock_file = None
        if camera is not None:
            lock_file = _lock(root, camera)
        try:
            lib = cls(root, open_index(root, held=camera, clock=clock), lock_file)
        except BaseException:
            if lock_file is not None:
                lock_file.close()
            raise
        if camera is not None:
            try:
                shape = (info.height, info.width) if info is not None else None
                report = reconcile(lib.index, camera, shape=shape)
            except BaseException:
                lib.close()
                raise
            lib.reconciled = report
            if report:
                log.info("library reconciled: %s", report.summary())
        return lib

    def close(self) -> None:
        self.index.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ----- runs ------------------------------------------------------------------------------
    def last_run(self, plan: ResolvedPlan, camera: str) -> RunRow | None:
        return self.index.last_run(plan.name, camera, plan.plan.folder or "")

    def check_run(self, run_id: int) -> ReconcileReport:
        """Before a run's frames are counted: quarantine those damaged since they were written
        (see :func:`capture.library.rescan.check_frames`); their cells are then refilled."""
        report = check_frames(self.index, run_id=run_id)
        if report:
            log.warning("run %d: %s", run_id, report.summary())
        return report

    def missing_frames(self, run_id: int, plan: ResolvedPlan) -> int:
        """Frames ``plan`` asks for that run ``run_id`` does not hold (cells added since)."""
        done = self.index.done_by_cell(run_id)
        return sum(max(0, c.count - done.get(c.key, (0, 0))[0]) for c in plan.cells)

    def begin_run(self, plan: ResolvedPlan, camera: str, digest: str, *,
                  new: bool = False, reopen: int | None = None) -> RunHandle:
        """Resume the open run of this plan on this camera (or the completed run ``reopen``,
        to add cells the plan gained), or start a new one."""
        folder = plan.plan.folder or ""
        if reopen is not None:
            existing = self.index.get_run(reopen)
        else:
            existing = None if new else self.index.find_open_run(plan.name, camera, folder)
        if existing is not None:
            run_id = existing.id
            if existing.plan_digest and existing.plan_digest != digest:
                log.warning("plan %s changed since run %d started: resuming with the new cells",
                            plan.name, run_id)
                self.index.event(run_id, "warning", "plan-changed",
                                 "plan changed since the run started; new cells added")
            self.index.set_run_state(run_id, "running")
        else:
            run_id = self.index.create_run(plan.name, str(plan.source) if plan.source else None,
                                           digest, camera, folder)
        self.index.upsert_cells(run_id, plan.cells)
        # Cells skipped in an earlier session get another chance.
        self.index.reset_cells(run_id, [c.key for c in plan.cells])
        row = self.index.get_run(run_id)
        write_manifest(self.root, run_id, {
            "run_id": run_id, "plan_name": plan.name, "camera": camera, "folder": folder,
            "plan_path": str(plan.source) if plan.source else None, "plan_digest": digest,
            "started_utc": row.started_utc if row else None,
            "cells": [_cell_dict(c) for c in plan.cells], "state": "running",
        })
        return RunHandle(run_id=run_id, resumed=existing is not None,
                         done=self.index.done_by_cell(run_id),
                         previous_state=existing.state if existing else None)

    def record_run_cells(self, run_id: int, cells: list[Cell]) -> None:
        """The run's cells changed (dark flats decided at run time): the index and manifest."""
        self.index.upsert_cells(run_id, cells)
        update_manifest(self.root, run_id, cells=[_cell_dict(c) for c in cells])

    def finish_run(self, run_id: int, complete: bool, reason: str | None) -> None:
        self.index.set_run_state(run_id, "complete" if complete else "paused", reason)
        update_manifest(self.root, run_id, state="complete" if complete else "paused")

    # ----- frames ----------------------------------------------------------------------------
    def frame_job(self, frame: Frame, ctx: FrameContext, *, folder: str | None,
                  stats: dict[str, float] | None = None) -> WriteJob:
        cell, info = ctx.cell, ctx.info
        default_mode = info.readout_modes[0]
        directory = frame_dir(self.root, ctx.camera_name, cell, default_mode=default_mode,
                              folder=folder, session_date=frame.start_utc)
        name = frame_name(cell, start=frame.start_utc, run_id=ctx.run_id, seq=ctx.seq,
                          exposure_s=frame.exposure_s, default_mode=default_mode)
        header = build_header(frame_cards(frame, ctx))
        row = frame_row(header, shape=frame.shape)
        if stats:
            row.update(stats)
        return WriteJob(path=directory / name, data=frame.data, header=header, row=row)

    def check_space(self, frame_bytes: int, min_free_mb: float) -> None:
        """Raise LibraryError when writing one more frame would leave less than ``min_free_mb``."""
        free = shutil.disk_usage(self.root).free
        need = frame_bytes + HEADER_ALLOWANCE + int(min_free_mb * 2**20)
        if free < need:
            raise LibraryError(
                f"disk nearly full: {free / 2**20:.0f} MB free in {self.root}, keeping "
                f"{min_free_mb:.0f} MB in reserve; stopped cleanly (free space, then run again)")

    def camera_folder(self, camera: str, folder: str | None) -> Path:
        return camera_root(self.root, camera, folder)

    @staticmethod
    def frame_bytes(info: CameraInfo, binning: int) -> int:
        return (info.width // binning) * (info.height // binning) * 2


def _cell_dict(c: Cell) -> dict[str, Any]:
    return {"key": c.key, "kind": c.kind, "gain": c.gain, "offset": c.offset,
            "binning": c.binning, "readout_mode": c.readout_mode, "setpoint_c": c.setpoint_c,
            "exposure_s": c.exposure_s, "filter": c.filter, "count": c.count,
            "gain_label": c.gain_label}


def _lock(root: Path, camera: str) -> IO[str]:
    path = root / STATE_DIR / f"lock-{safe_part(camera)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise LibraryError(
            f"camera {camera!r} is already capturing into {root} ({holder}); "
            "stop it first or use another library") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    return fh
