"""Time as the core and the devices see it.

Everything that waits goes through a :class:`Clock`, so a simulated clock can run a four-day plan
in minutes while the code paths stay identical. All durations are in seconds of *clock* time (real
seconds for :class:`RealClock`, simulated seconds for a simulated clock).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC
from datetime import datetime
from typing import Protocol
from typing import runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of time that can also wait."""

    def now(self) -> datetime:
        """Current UTC time (timezone-aware). Never blocks."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful). Never blocks."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of clock time (<= 0: return at once)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` of clock time pass.

        Returns True when the event was set (callers abort a wait from another thread).
        """
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many real (wall) seconds ``seconds`` of clock time take; used to size OS-level
        deadlines such as socket timeouts."""
        ...


class RealClock:
    """The wall clock: UTC from the system, ``time.monotonic`` for intervals."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds
