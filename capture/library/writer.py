"""The background FITS writer: disk I/O overlaps the next exposure.

The sequencer hands each accepted frame to :meth:`FrameWriter.submit`; one writer thread writes it
atomically (:func:`capture.library.fitsio.write_atomic`) and only then adds it to the index, so a
frame is counted exactly when its complete file exists. The frames handed over are bounded in
number, and their images in bytes until each is in its file (memory stays flat when the disk is
slower than the camera: ``submit`` blocks); one frame is always accepted when no image is held,
so large frames still overlap the next exposure, and fsyncs do not hold images. The first write
error stops the writer; the next ``submit`` or ``flush`` raises it as :class:`LibraryError`.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from calibd.capture.closeable import Closeable
from calibd.capture.errors import LibraryError
from calibd.capture.library.fitsio import write_atomic
from calibd.capture.library.index import Index
from calibd.drivers.contracts import ImageArray

log = logging.getLogger(__name__)
_NO_IMAGE: ImageArray = np.zeros((0, 0), dtype=np.uint16)  # a written job's image, dropped


@dataclass
class WriteJob:
    path: Path  # final absolute path
    data: ImageArray
    header: fits.Header
    row: Mapping[str, Any]  # index row; "path", "bytes", "mtime_ns" filled in by the writer


class FrameWriter(Closeable):
    """One writer thread per run. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        index: Index,
        *,
        queue_size: int = 3,
        max_bytes: int = 64 * 2**20,
        fsync: bool = True,
        on_written: Callable[[WriteJob], None] | None = None,
    ) -> None:
        self._index = index
        self._fsync = fsync
        self._on_written = on_written
        self._queue: queue.Queue[WriteJob | None] = queue.Queue()  # bounded by submit
        self._max_jobs = max(1, queue_size) + 1  # waiting, plus the one being written
        self._max_bytes = max_bytes
        self._error: BaseException | None = None
        self._pending = 0
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="calibd-writer", daemon=True)
        self._thread.start()
        self.busy_s = 0.0  # real seconds spent writing, for benchmarks

    def submit(self, job: WriteJob, *, timeout_s: float = 600.0) -> None:
        """Queue a frame. Blocks while ``queue_size`` frames wait for the writer, or while
        ``max_bytes`` of images are held (waiting, or being written until they are in their
        file: the fsyncs do not hold them), at most ``timeout_s`` real seconds; a frame is
        always accepted when no image is held.

        Raises LibraryError if an earlier write failed or the writer is stuck.
        """
        self._raise_if_failed()
        size = int(job.data.nbytes)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending >= self._max_jobs or (
                    self._pending_bytes > 0 and self._pending_bytes + size > self._max_bytes):
                if self._error is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LibraryError(f"the writer made no progress for {timeout_s:.0f} s")
                self._cond.wait(min(left, 0.5))
            self._raise_if_failed()
            self._pending += 1
            self._pending_bytes += size
        self._queue.put(job)

    def flush(self, timeout_s: float = 600.0) -> None:
        """Block until every submitted frame is written (or the writer failed). Raises
        LibraryError on failure or after ``timeout_s`` real seconds."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending > 0 and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LibraryError(f"frames still unwritten after {timeout_s:.0f} s")
                self._cond.wait(min(left, 0.5))
        self._raise_if_failed()

    def close(self, timeout_s: float = 600.0) -> None:
        """Flush, then stop the thread. Raises LibraryError like :meth:`flush`."""
        try:
            self.flush(timeout_s)
        finally:
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    @property
    def error(self) -> BaseException | None:
        return self._error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, LibraryError):
                raise self._error
            raise LibraryError(f"writing failed: {self._error}") from self._error

    def _release(self, job: WriteJob) -> None:
        """``job``'s image is in its file (or failed): drop it and let the next one in."""
        if job.data is _NO_IMAGE:
            return
        nbytes = int(job.data.nbytes)
        job.data = _NO_IMAGE
        with self._cond:
            self._pending_bytes -= nbytes
            self._cond.notify_all()

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            self._index.close()  # this thread's connection (SQLite checkpoints on the last close)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is None:
                t0 = time.perf_counter()
                try:
                    write_atomic(job.path, job.data, job.header, fsync=self._fsync,
                                 data_written=functools.partial(self._release, job))
                    st = job.path.stat()
                    row = dict(job.row)
                    row["path"] = job.path.relative_to(self._index.root).as_posix()
                    row["bytes"] = st.st_size
                    row["mtime_ns"] = st.st_mtime_ns  # the checksum was right at this time
                    self._index.add_frame(row)
                    if self._on_written is not None:
                        self._on_written(job)
                except BaseException as err:
                    log.error("writing %s failed: %s", job.path.name, err)
                    self._error = err
                self.busy_s += time.perf_counter() - t0
            self._release(job)
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
