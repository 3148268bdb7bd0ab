"""Simulated filter wheel, flat panel (ASCOM CoverCalibrator semantics) and safety monitor.

They move and warm up in clock time, so waits and deadlines are exercised as on hardware.
"""

from __future__ import annotations

import threading
from dataclasses import KW_ONLY
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected

DEFAULT_FILTERS = ("L", "R", "G", "B", "Ha", "OIII", "SII")


class _Connectable:
    """Connect/disconnect of a simulated accessory; ``_require`` refuses calls while
    disconnected (DeviceUnavailable)."""

    name: str
    _connected = False

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def _require(self) -> None:
        if not self._connected:
            raise DeviceUnavailable("not connected", device=self.name)


@dataclass(eq=False)
class SimulatedFilterWheel(_Connectable):
    """Named slots; a move takes ``seconds_per_slot`` per slot travelled (clock seconds)."""

    clock: Clock
    names: tuple[str, ...] = DEFAULT_FILTERS
    _: KW_ONLY
    seconds_per_slot: float = 1.0
    name: str = "wheel"
    moves: int = field(init=False, default=0)
    _pos: int = field(init=False, default=0)
    _moving: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError("filter names must be unique and non-empty")

    def position(self) -> str | None:
        self._require()
        return None if self._moving else self.names[self._pos]

    def select(self, name: str, *, timeout_s: float | None = None) -> None:
        self._require()
        if name not in self.names:
            raise SettingRejected(f"no filter named {name!r} (slots: {', '.join(self.names)})",
                                  device=self.name)
        target = self.names.index(name)
        slots = min(abs(target - self._pos), len(self.names) - abs(target - self._pos))
        duration = slots * self.seconds_per_slot
        if timeout_s is not None and duration > timeout_s:
            raise DeviceUnavailable(f"move to {name} needs {duration:.0f} s, more than "
                                    f"{timeout_s:.0f} s", device=self.name)
        self._moving = True
        try:
            self.clock.sleep(duration)
        finally:
            self._moving = False
        self._pos = target
        if slots:
            self.moves += 1

    def current(self) -> str | None:
        """The filter in the beam (for the optical train); no connection needed."""
        return self.names[self._pos]


@dataclass(eq=False)
class SimulatedFlatPanel(_Connectable):
    """A light panel, optionally with a motorised cover (a flip-flat).

    With a cover, the panel lights the sensor when the cover is closed and the sky does when it is
    open; without one, the panel always sits in the beam. Light output is linear in brightness:
    ``flux_e_per_s_max`` electrons per second per pixel (before the filter) at full brightness.
    """

    clock: Clock
    _: KW_ONLY
    max_brightness: int = 1023
    has_cover: bool = True
    flux_e_per_s_max: float = 100_000.0
    settle_s: float = 2.0
    cover_move_s: float = 8.0
    drift_pct_per_min: float = 0.0  # output fades while lit (EL panels warm up)
    name: str = "panel"
    _lit_since: float = field(init=False, default=0.0)
    _brightness: int = field(init=False, default=0)
    _cover: CoverState = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._cover = CoverState.CLOSED if self.has_cover else CoverState.NOT_PRESENT

    def light(self, brightness: int, *, timeout_s: float | None = None) -> None:
        self._require()
        if not 0 <= brightness <= self.max_brightness:
            raise SettingRejected(f"brightness {brightness} outside 0..{self.max_brightness}",
                                  device=self.name)
        with self._lock:
            changed = brightness != self._brightness
            self._brightness = brightness
            if changed:
                self._lit_since = self.clock.monotonic()
        if changed:
            self.clock.sleep(self.settle_s)

    def off(self, *, timeout_s: float | None = None) -> None:
        self._require()
        with self._lock:
            self._brightness = 0

    def brightness(self) -> int:
        self._require()
        return self._brightness

    def cover_state(self) -> CoverState:
        self._require()
        return self._cover

    def open_cover(self, *, timeout_s: float | None = None) -> None:
        self._move(CoverState.OPEN)

    def close_cover(self, *, timeout_s: float | None = None) -> None:
        self._move(CoverState.CLOSED)

    def panel_flux(self) -> float | None:
        """Flux from the panel into the beam, or None when the beam sees the sky instead."""
        if self.has_cover and self._cover != CoverState.CLOSED:
            return None
        minutes = (self.clock.monotonic() - self._lit_since) / 60.0
        fade = max(0.0, 1.0 - self.drift_pct_per_min / 100.0 * minutes)
        return self.flux_e_per_s_max * self._brightness / self.max_brightness * fade

    def _move(self, target: CoverState) -> None:
        self._require()
        if not self.has_cover:
            raise NotSupported("this panel has no cover", device=self.name)
        if self._cover == target:
            return
        self._cover = CoverState.MOVING
        self.clock.sleep(self.cover_move_s)
        self._cover = target


class SimulatedSafetyMonitor(_Connectable):
    """Weather by schedule: cloudy (unsafe) inside the given clock-time periods, or whenever
    :meth:`set_cloudy` says so."""

    def __init__(self, clock: Clock, *, cloudy: bool = False,
                 cloudy_periods: list[tuple[datetime, datetime]] | None = None,
                 name: str = "weather") -> None:
        self._clock = clock
        self._cloudy = cloudy
        self._periods = list(cloudy_periods or [])
        self.name = name

    def set_cloudy(self, cloudy: bool) -> None:
        self._cloudy = cloudy

    def is_safe(self) -> bool:
        self._require()
        return not self._is_cloudy()

    def cloud_cover_pct(self) -> float | None:
        return 90.0 if self._is_cloudy() else 5.0

    def _is_cloudy(self) -> bool:
        if self._cloudy:
            return True
        now = self._clock.now()
        return any(start <= now < end for start, end in self._periods)
