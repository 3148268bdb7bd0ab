"""Simulated clocks that satisfy :class:`drivers.clock.Clock`.

:class:`ScaledClock` runs simulated time ``scale`` times faster than real time, for every thread
and the simulated devices alike, so a 600 s dark takes 600/scale real seconds and a four-day plan
finishes in minutes. Real work (computing a frame, writing a file) also advances simulated time by
``scale`` times its real duration, exactly as it would take time on a real machine.

:class:`SteppedClock` never sleeps: each ``sleep`` advances time at once. It suits single-threaded
unit tests that need exact, reproducible times.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta


class ScaledClock:
    """Simulated time = ``start`` + ``scale`` x (real time since ``real_start``) + jumps.

    ``real_start`` (UTC, default: now) is the real instant at which the clock read ``start``: two
    processes given the same ``scale``, ``start`` and ``real_start`` (calibd and the Alpaca
    server it drives) keep the same simulated time, read off the one wall clock of the machine.
    Thread-safe. ``advance`` jumps forward (e.g. to skip a cloudy afternoon in a scheduler test).
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None, *,
                 real_start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"clock scale must be > 0, got {scale}")
        self.scale = float(scale)
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._real0 = time.monotonic()
        if real_start is not None:  # the wall clock read once, then the monotonic one
            self._real0 -= time.time() - real_start.astimezone(UTC).timestamp()
        self._jump_s = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            jump = self._jump_s
        return (time.monotonic() - self._real0) * self.scale + jump

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.scale)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self.scale)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward by ``seconds`` (sleepers are not woken early)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._jump_s += seconds


class SteppedClock:
    """Event-free virtual time: ``sleep``/``wait`` advance time immediately and return.

    ``wait`` returns at once with the event's state (advancing time only if it is not set).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = (start or datetime(2026, 1, 1, 18, 0, tzinfo=UTC)).astimezone(UTC)
        self._t = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._t += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()

    def real_seconds(self, seconds: float) -> float:
        return 0.0

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)
