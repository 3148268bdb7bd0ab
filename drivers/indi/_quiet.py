"""Keeping the INDI client library's own output out of calibd's standard output and error.

libindiclient (inside pyindi-client) prints unprefixed lines such as
``INDI::BaseClient::connectServer: creating new connection...`` straight to the process's file
descriptors while connecting and disconnecting. Around those calls, :func:`native_output_to_log`
points descriptors 1 and 2 at a temporary file, then restores them and hands the library's lines
to calibd's logging (debug); anything else that other threads wrote meanwhile goes back to the
real standard error unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

MAX_CAPTURED_BYTES = 64 * 1024
_lock = threading.Lock()  # one redirection at a time in this process


def _flush_native() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def native_output_to_log() -> Iterator[None]:
    """Capture what native code writes to fds 1/2 during the block (bounded; never raises
    because of the capture itself)."""
    with _lock:
        try:
            sink = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
            saved = (os.dup(1), os.dup(2))
        except OSError as err:  # no descriptors to spare: let the output through
            log.debug("cannot capture the INDI client's output: %r", err)
            yield
            return
        try:
            _flush_native()
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                _flush_native()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
            sink.seek(0)
            text = sink.read(MAX_CAPTURED_BYTES).decode("utf-8", "replace")
        finally:
            for fd in saved:
                os.close(fd)
            sink.close()
    other: list[str] = []
    for line in text.splitlines():
        if line.startswith("INDI::"):
            log.debug("INDI client: %s", line[:300])
        elif line.strip():
            other.append(line)
    if other:
        with contextlib.suppress(OSError):
            os.write(2, ("\n".join(other) + "\n").encode("utf-8", "replace"))
