"""The one reconnect-with-back-off loop (capture/sequencer/reconnect.py): bounded, doubling,
interruptible, and only for DeviceUnavailable."""

from __future__ import annotations

import threading

import pytest

from calibd.capture.errors import RunPaused
from calibd.capture.sequencer.reconnect import until_available
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.simulators.clock import SteppedClock


class Flaky:
    """A device call that fails ``failures`` times (None: always), recording when it was tried."""

    def __init__(self, clock: SteppedClock, failures: int | None) -> None:
        self.clock = clock
        self.failures = failures
        self.tried_at: list[float] = []

    def __call__(self) -> str:
        self.tried_at.append(self.clock.monotonic())
        if self.failures is None or len(self.tried_at) <= self.failures:
            raise DeviceUnavailable(f"gone (try {len(self.tried_at)})")
        return "answer"


def test_gives_up_before_the_deadline_with_the_last_error() -> None:
    clock = SteppedClock()
    device = Flaky(clock, None)
    lost: list[str] = []
    reconnects: list[float] = []
    with pytest.raises(RunPaused, match=r"^cam gave up: gone \(try 7\)$"):
        until_available(device, clock=clock, stop=threading.Event(), timeout_s=100.0,
                        gave_up=lambda err: f"cam gave up: {err}",
                        on_lost=lambda err: lost.append(str(err)),
                        between=lambda: reconnects.append(clock.monotonic()))
    # 1, 2, 4, ... 32 s apart; the next 64 s wait would end after the 100 s deadline.
    assert device.tried_at == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert reconnects == device.tried_at[1:]
    assert len(lost) == 6
    assert clock.monotonic() <= 100.0


def test_delay_is_capped_and_a_device_that_comes_back_answers() -> None:
    clock = SteppedClock()
    device = Flaky(clock, 8)
    assert until_available(device, clock=clock, stop=threading.Event(), timeout_s=3600.0,
                           gave_up=str) == "answer"
    gaps = [b - a for a, b in zip(device.tried_at, device.tried_at[1:], strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_the_deadline_counts_from_the_first_failure_and_no_try_starts_past_it() -> None:
    """A 600 s exposure that ends with the camera gone leaves the whole timeout to come back;
    tries that take long themselves use it up."""
    clock = SteppedClock()
    tries: list[float] = []

    def long_and_gone() -> None:
        tries.append(clock.monotonic())
        clock.advance(600.0 if len(tries) == 1 else 30.0)
        raise DeviceUnavailable("camera gone")

    with pytest.raises(RunPaused, match="gone"):
        until_available(long_and_gone, clock=clock, stop=threading.Event(), timeout_s=100.0,
                        gave_up=str)
    # Lost at 600 s, so the deadline is 700: tries 1, 2 and 4 s after each failure, each
    # failing 30 s later (631, 663, 697); the next 8 s wait would end at 705.
    assert tries == [0.0, 601.0, 633.0, 667.0]
    assert clock.monotonic() <= 700.0


def test_stop_ends_the_wait_and_other_errors_are_not_retried() -> None:
    clock = SteppedClock()
    stop = threading.Event()
    stop.set()
    with pytest.raises(RunPaused, match="stop requested"):
        until_available(Flaky(clock, None), clock=clock, stop=stop, timeout_s=100.0,
                        gave_up=str)
    assert clock.monotonic() == 0.0

    calls: list[int] = []

    def refuses() -> None:
        calls.append(1)
        raise SettingRejected("gain 9999 out of range")

    with pytest.raises(SettingRejected):
        until_available(refuses, clock=clock, stop=threading.Event(), timeout_s=100.0,
                        gave_up=str)
    assert calls == [1]
