"""Masters built while a run goes on: a background thread builds a cell's master as soon as the
run completes the cell (bias, darks, dark flats); flats and bad pixel maps at the end of the run,
once their dark flats exist. Capture never waits for it, except at the very end."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path

from calibd.capture.config import MastersConfig
from calibd.capture.library.index import Index
from calibd.capture.masters.service import BuildReport
from calibd.capture.masters.service import build_missing
from calibd.capture.plans.cells import Cell

log = logging.getLogger(__name__)
WAIT_FOR_FRAMES_S = 600.0  # real seconds a cell's frames may take to reach the index


class AutoMasters:
    def __init__(self, root: Path, run_id: int, cfg: MastersConfig) -> None:
        self.root = root
        self.run_id = run_id
        self.cfg = cfg
        self.report = BuildReport()
        self._queue: queue.Queue[Cell | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="calibd-masters", daemon=True)
        self._thread.start()

    def cell_complete(self, cell: Cell) -> None:
        """Called by the sequencer when ``cell`` has all its frames (maybe not yet on disk)."""
        if cell.kind != "flat":
            self._queue.put(cell)

    def finish(self, timeout_s: float = 3600.0) -> BuildReport:
        """Build what remains for this run (flats, bad pixel maps) and stop. Blocks."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        index = Index(self.root)
        try:
            report = build_missing(index, self.cfg, run_id=self.run_id)
        finally:
            index.close()
        self.report.built += report.built
        self.report.failed += report.failed
        return self.report

    def stop(self, timeout_s: float = 600.0) -> None:
        """The run failed: build nothing more, let the master being built finish (at most
        ``timeout_s`` real seconds) and stop. What is left is built by the next run."""
        self._stopping.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        index = Index(self.root)
        try:
            self._serve(index)
        finally:
            index.close()  # this thread's connection

    def _serve(self, index: Index) -> None:
        while True:
            cell = self._queue.get()
            if cell is None:
                return
            deadline = time.monotonic() + WAIT_FOR_FRAMES_S
            while time.monotonic() < deadline and not self._stopping.is_set():
                if index.frame_count(self.run_id, cell.key) >= cell.count:
                    break
                time.sleep(0.2)
            if self._stopping.is_set():
                return
            try:
                report = build_missing(index, self.cfg, run_id=self.run_id, cell_key=cell.key,
                                       bpm=False)
            except Exception as err:  # the run must not die for a master
                log.error("building the master of %s failed: %s", cell.describe(), err)
                continue
            self.report.built += report.built
            self.report.failed += report.failed
