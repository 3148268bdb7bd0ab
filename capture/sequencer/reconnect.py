"""The one bounded reconnect-with-back-off loop of a run (camera and accessories alike).

A device that raised :class:`~drivers.errors.DeviceUnavailable` is tried again after 1 s, 2 s,
4 s … (at most 60 s apart) until it answers or the next wait would pass the deadline (counted
from the first failure, whatever the attempts in between did); then the run pauses. The waits
follow the run's clock and end early when ``stop`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from calibd.capture.errors import RunPaused
from calibd.drivers.clock import Clock
from calibd.drivers.errors import DeviceUnavailable

T = TypeVar("T")

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0


def _nothing() -> None:
    return None


def until_available(
    attempt: Callable[[], T],
    *,
    clock: Clock,
    stop: threading.Event,
    timeout_s: float,
    gave_up: Callable[[DeviceUnavailable], str],
    on_lost: Callable[[DeviceUnavailable], None] | None = None,
    between: Callable[[], None] = _nothing,
) -> T:
    """Call ``attempt`` until it stops raising DeviceUnavailable and return its result.

    After each failure: ``on_lost(err)`` (e.g. journal it), wait (1 s doubling to 60 s, clock
    seconds, interruptible through ``stop``), then ``between()`` (e.g. reconnect the devices)
    and try again. Blocks at most about ``timeout_s`` clock seconds from the first failure
    (plus the attempt running then: none is started past the deadline).

    Raises RunPaused with ``gave_up(last error)`` when the next wait would pass the deadline,
    RunPaused when ``stop`` is set while waiting; any other exception of ``attempt`` or
    ``between`` propagates unchanged.
    """
    deadline: float | None = None
    delay = FIRST_DELAY_S
    while True:
        try:
            return attempt()
        except DeviceUnavailable as err:
            now = clock.monotonic()
            if deadline is None:  # a long exposure that fails leaves the full time to come back
                deadline = now + timeout_s
            if now + delay > deadline:
                raise RunPaused(gave_up(err)) from err
            if on_lost is not None:
                on_lost(err)
            if clock.wait(stop, delay):
                raise RunPaused("stop requested while reconnecting") from None
            delay = min(delay * 2.0, MAX_DELAY_S)
            between()
