"""One exposure at a time: the guard a camera driver's ``expose`` runs under."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager

from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout


class ExposureGuard:
    """The running flag of one camera, the abort event that wakes its waits and the lock that
    guards both (a driver may guard its own exposure state with :attr:`lock` too), and, while an
    exposure runs, the device it is named by and how to stop it. Thread-safe; nothing here
    blocks beyond the lock, except :meth:`end_wait_if_over`, which runs the driver's ``stop`` (a
    device call) when it ends a wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Set by the driver's ``abort()`` while :attr:`busy`; clear whenever the camera is idle.
        self.abort = threading.Event()
        self.busy = False
        # The running exposure's device name and stop call (set by exposing()).
        self._device = ""
        self._stop: Callable[[str], None] | None = None

    @contextmanager
    def exposing(
        self,
        device: str,
        on_end: Callable[[], None] | None = None,
        *,
        stop: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Hold the camera for one exposure: marks it busy; on exit (also on error) marks it idle,
        clears :attr:`abort` and runs ``on_end`` (under :attr:`lock`, so it must not block).
        ``device`` names the camera in the errors raised here and by :meth:`end_wait_if_over`;
        ``stop(reason)`` is how that method stops the exposure on the device (None: nothing to
        call). Raises ExposureFailed (naming ``device``) at once if another exposure is running."""
        with self.lock:
            if self.busy:
                raise ExposureFailed("another exposure is already running", device=device)
            self.busy = True
            self._device, self._stop = device, stop
        try:
            yield
        finally:
            with self.lock:
                self.busy = False
                self.abort.clear()
                self._device, self._stop = "", None
                if on_end is not None:
                    on_end()

    def end_wait_if_over(self, now: float, deadline: float, timeout_message: str) -> None:
        """End a driver's wait for the running exposure once it is over: after an abort
        (:attr:`abort` set) raises ExposureFailed("exposure aborted"), else at or past
        ``deadline`` raises ExposureTimeout(``timeout_message``); both name the device given to
        :meth:`exposing`. Before raising it stops the exposure with that method's ``stop(reason)``
        (reason ``"abort()"`` or ``"deadline"``, for the driver's log); blocks only as long as
        that call, whose errors propagate. Returns when neither. ``now`` and ``deadline`` are
        seconds of the caller's monotonic clock. Call it only inside :meth:`exposing`."""
        if self.abort.is_set():
            self._stop_running("abort()")
            raise ExposureFailed("exposure aborted", device=self._device)
        if now >= deadline:
            self._stop_running("deadline")
            raise ExposureTimeout(timeout_message, device=self._device)

    def _stop_running(self, reason: str) -> None:
        if self._stop is not None:
            self._stop(reason)

    def request_abort(self) -> bool:
        """Set :attr:`abort` if an exposure is running; returns whether one is. Never raises."""
        with self.lock:
            if self.busy:
                self.abort.set()
            return self.busy
