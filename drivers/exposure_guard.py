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
    guards both (a driver may guard its own exposure state with :attr:`lock` too). Thread-safe;
    nothing here blocks beyond the lock, except :meth:`end_wait_if_over`, which runs the driver's
    ``stop`` (a device call) when it ends a wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Set by the driver's ``abort()`` while :attr:`busy`; clear whenever the camera is idle.
        self.abort = threading.Event()
        self.busy = False

    @contextmanager
    def exposing(self, device: str, on_end: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the camera for one exposure: marks it busy; on exit (also on error) marks it idle,
        clears :attr:`abort` and runs ``on_end`` (under :attr:`lock`, so it must not block).
        Raises ExposureFailed (naming ``device``) at once if another exposure is running."""
        with self.lock:
            if self.busy:
                raise ExposureFailed("another exposure is already running", device=device)
            self.busy = True
        try:
            yield
        finally:
            with self.lock:
                self.busy = False
                self.abort.clear()
                if on_end is not None:
                    on_end()

    def end_wait_if_over(
        self,
        now: float,
        deadline: float,
        *,
        device: str,
        stop: Callable[[str], None],
        timeout_message: str,
    ) -> None:
        """End a driver's wait for its exposure once it is over: after an abort (:attr:`abort`
        set) raises ExposureFailed("exposure aborted"), else at or past ``deadline`` raises
        ExposureTimeout(``timeout_message``); both name ``device``. Before raising it stops the
        exposure on the device with ``stop(reason)`` (reason ``"abort()"`` or ``"deadline"``, for
        the driver's log); blocks only as long as that call, whose errors propagate. Returns
        when neither. ``now`` and ``deadline`` are seconds of the caller's monotonic clock."""
        if self.abort.is_set():
            stop("abort()")
            raise ExposureFailed("exposure aborted", device=device)
        if now >= deadline:
            stop("deadline")
            raise ExposureTimeout(timeout_message, device=device)

    def request_abort(self) -> bool:
        """Set :attr:`abort` if an exposure is running; returns whether one is. Never raises."""
        with self.lock:
            if self.busy:
                self.abort.set()
            return self.busy
