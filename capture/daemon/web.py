"""The web view the API server also serves: static pages shipped in the package
(``capture/daemon/web/``), a live stream of the cameras' status (server-sent events), the cooler
history, the library view (coverage, masters, journal) and the calibration report.

Routes (GET; same rules as the API: Host checks, open on a loopback bind, token elsewhere —
except the static files, which hold no data)::

    /                       the page (index.html), /static/<file> its script and style
    /report                 the calibration report (HTML, rebuilt at most once a minute)
    /api/v1/live            text/event-stream: the cameras' status, every second while it changes
    /api/v1/history         cooler temperature and power per camera, the last hours
    /api/v1/library         coverage cells, masters and the run journal
    /api/v1/masters/<id>.png  a master's stretched thumbnail (the bad pixel map as an image)

Streams are bounded: at most :data:`MAX_STREAMS` at a time (503 past that), each ends after
:data:`STREAM_MAX_S` real seconds (the page reconnects) or as soon as a send blocks past the
API's response timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from typing import Protocol
from typing import runtime_checkable

MAX_STREAMS = 4  # live streams at once
STREAM_MAX_S = 300.0  # real seconds a stream lasts; the page reconnects
STREAM_EVERY_S = 1.0  # real seconds between looks at the status
HEARTBEAT_S = 15.0  # a comment line at least this often, so proxies keep the stream
REPORT_CACHE_S = 60.0  # real seconds a built report is served again
STATIC = {  # file name -> content type: nothing else is served from the package
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# No inline scripts, nothing from elsewhere; SVG plots carry style attributes.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


@runtime_checkable
class ViewSource(Protocol):
    """What the web view asks of the daemon besides :class:`DaemonControl` (each call returns
    quickly but :meth:`report_html`, which reads the library index)."""

    def live(self) -> dict[str, Any]:
        """The cheap part of the status: ``{"daemon": {...}, "cameras": {...}}``."""
        ...

    def history(self) -> dict[str, list[dict[str, Any]]]:
        """camera -> [{"t": ISO time, "temperature_c", "setpoint_c", "power_pct"}], oldest
        first."""
        ...

    def library_view(self) -> dict[str, Any]:
        """``{"cells": [...], "masters": [...], "journal": [...]}`` (bounded lists)."""
        ...

    def report_html(self) -> str:
        """The calibration report page of the library."""
        ...

    def thumbnail(self, master_id: int) -> bytes | None:
        """A stretched PNG of the master (or bad pixel map) ``master_id``; None if unknown."""
        ...


def static_file(name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of a shipped web file, or None for any other name."""
    ctype = STATIC.get(name)
    if ctype is None:
        return None
    data = resources.files("calibd.capture.daemon").joinpath("web", name).read_bytes()
    return ctype, data


class Streams:
    """Counts the live streams (at most :data:`MAX_STREAMS`)."""

    def __init__(self) -> None:
        self._slots = threading.BoundedSemaphore(MAX_STREAMS)

    def acquire(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()


def stream_live(live: Callable[[], dict[str, Any]], write: Callable[[bytes], object],
                stopping: Callable[[], bool]) -> None:
    """Write server-sent events of ``live()`` (one ``status`` event each time it changes) until
    :data:`STREAM_MAX_S` passes, ``stopping()`` is true or ``write`` raises (a client gone or
    too slow: OSError). Blocks the calling request thread."""
    end = time.monotonic() + STREAM_MAX_S
    last = b""
    beat = time.monotonic()
    write(b"retry: 2000\n\n")
    while time.monotonic() < end and not stopping():
        data = json.dumps(live(), default=str, allow_nan=False).encode()
        if data != last:
            write(b"event: status\ndata: " + data + b"\n\n")
            last = data
            beat = time.monotonic()
        elif time.monotonic() - beat >= HEARTBEAT_S:
            write(b": alive\n\n")
            beat = time.monotonic()
        time.sleep(STREAM_EVERY_S)


class ReportCache:
    """The last report page, built again at most every :data:`REPORT_CACHE_S`; one build at a
    time (other requests wait for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._page: bytes | None = None
        self._at = 0.0

    def get(self, build: Callable[[], str]) -> bytes:
        with self._lock:
            if self._page is None or time.monotonic() - self._at > REPORT_CACHE_S:
                self._page = build().encode("utf-8")
                self._at = time.monotonic()
            return self._page
