"""A simulated mount and dome (or roll-off roof), moving in clock time.

The mount holds alt/az fixed while tracking is off (the sky drifts past) and RA/Dec fixed while
it tracks; conversions use :mod:`drivers.pointing` (astropy, offline), so the simulator, the
drivers and the core agree on where a direction is. Slews take ``distance / slew_deg_per_s``
clock seconds and can be aborted from another thread. The dome's shutter takes
``shutter_move_s`` to open or close; ``fail_close`` / ``fail_open`` make it stick (faults).
"""

from __future__ import annotations

import math
import threading
from dataclasses import KW_ONLY
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

from calibd.drivers.clock import Clock
from calibd.drivers.contracts import MountState
from calibd.drivers.contracts import MountStatus
from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.pointing import Place
from calibd.drivers.pointing import altaz_to_radec
from calibd.drivers.pointing import load_frames
from calibd.drivers.pointing import radec_to_altaz
from calibd.drivers.pointing import separation_deg
from calibd.simulators.accessories import _Connectable

DEFAULT_TIMEOUT_S = 600.0


@dataclass(eq=False)
class SimulatedMount(_Connectable):
    """A German equatorial mount seen from the outside: park, slews, tracking, abort.

    ``park_altaz`` is where it parks (degrees). Pointing is read with :meth:`pointing` by the
    simulated sky (no connection needed).
    """

    clock: Clock
    place: Place
    _: KW_ONLY
    slew_deg_per_s: float = 4.0
    park_altaz: tuple[float, float] = (0.0, 0.0)
    name: str = "mount"
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _abort: threading.Event = field(init=False, default_factory=threading.Event)
    _parked: bool = field(init=False, default=True)
    _slewing: bool = field(init=False, default=False)
    _tracking: bool = field(init=False, default=False)
    _altaz: tuple[float, float] = field(init=False)  # valid while not tracking
    _radec: tuple[float, float] | None = field(init=False, default=None)  # valid while tracking
    _offset_log: list[tuple[datetime, float, float]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._altaz = self.park_altaz

    # -- what the sky sees ------------------------------------------------------------------

    def connect(self) -> None:
        """Connect; the first coordinate conversion is paid here, before any sky matters."""
        super().connect()
        load_frames(self.place)

    def pointing(self, when: datetime | None = None) -> tuple[float, float, bool]:
        """(alt, az, tracking) at ``when`` (default now)."""
        when = when or self.clock.now()
        with self._lock:
            tracking, radec, altaz = self._tracking, self._radec, self._altaz
        if tracking and radec is not None:
            alt, az = radec_to_altaz(self.place, when, *radec)
            return alt, az, True
        return altaz[0], altaz[1], False

    def radec(self, when: datetime | None = None) -> tuple[float, float]:
        """Apparent RA (hours) / Dec (degrees) the mount points at now."""
        when = when or self.clock.now()
        with self._lock:
            tracking, radec, altaz = self._tracking, self._radec, self._altaz
        if tracking and radec is not None:
            return radec
        return altaz_to_radec(self.place, when, *altaz)

    # -- the Mount contract -----------------------------------------------------------------

    def status(self) -> MountStatus:
        self._require()
        now = self.clock.now()
        alt, az, tracking = self.pointing(now)
        ra, dec = self.radec(now)
        if self._parked:
            state = MountState.PARKED
        elif self._slewing:
            state = MountState.SLEWING
        else:
            state = MountState.TRACKING if tracking else MountState.STOPPED
        return MountStatus(state, ra, dec, alt, az)

    def unpark(self, *, timeout_s: float | None = None) -> None:
        self._require()
        with self._lock:
            self._parked = False
            self._tracking = False

    def park(self, *, timeout_s: float | None = None) -> None:
        self._require()
        if self._parked:
            return
        self._move(*self.park_altaz, timeout_s)
        with self._lock:
            self._parked = True
            self._tracking = False
            self._radec = None

    def park_here(self) -> None:
        """Stop any slew and be parked where the mount stands (what the INDI telescope
        simulator does when an unpark interrupts its park). Does not block."""
        self._require()
        self._abort.set()
        with self._lock:
            self._parked = True
            self._tracking = False
            self._radec = None

    def slew_altaz(self, alt_deg: float, az_deg: float, *, tracking: bool = False,
                   timeout_s: float | None = None) -> None:
        self._require()
        _check_altaz(alt_deg, az_deg, self.name)
        self._refuse_parked()
        self._move(alt_deg, az_deg, timeout_s)
        self.set_tracking(tracking)

    def slew_radec(self, ra_hours: float, dec_deg: float, *, tracking: bool = True,
                   timeout_s: float | None = None) -> None:
        self._require()
        if not (0.0 <= ra_hours < 24.0 and -90.0 <= dec_deg <= 90.0):
            raise SettingRejected(f"RA {ra_hours:g} h / Dec {dec_deg:g}° out of range",
                                  device=self.name)
        self._refuse_parked()
        when = self.clock.now()
        alt, az = radec_to_altaz(self.place, when, ra_hours, dec_deg)
        self._move(alt, az, timeout_s)
        with self._lock:
            self._radec = (ra_hours, dec_deg)
            self._tracking = True
        if not tracking:
            self.set_tracking(False)

    def set_tracking(self, on: bool) -> None:
        self._require()
        self._refuse_parked()
        now = self.clock.now()
        alt, az, _ = self.pointing(now)
        ra, dec = self.radec(now)
        with self._lock:
            self._tracking = on
            self._altaz = (alt, az)
            self._radec = (ra, dec) if on else None

    def abort(self) -> None:
        self._abort.set()

    # -- internals --------------------------------------------------------------------------

    def _refuse_parked(self) -> None:
        if self._parked:
            raise SettingRejected("the mount is parked: unpark it first", device=self.name)

    def _move(self, alt: float, az: float, timeout_s: float | None) -> None:
        start_alt, start_az, _ = self.pointing()
        distance = separation_deg(start_alt, start_az, alt, az)
        duration = distance / self.slew_deg_per_s
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self._abort.clear()
        began = self.clock.monotonic()
        with self._lock:
            self._slewing = True
            self._tracking = False
            self._radec = None
        try:
            interrupted = self.clock.wait(self._abort, min(duration, timeout))
            if interrupted or duration > timeout:
                elapsed = self.clock.monotonic() - began
                frac = min(1.0, elapsed / duration) if duration > 0 else 1.0
                with self._lock:
                    self._altaz = (start_alt + frac * (alt - start_alt),
                                   (start_az + frac * _wrap(az - start_az)) % 360.0)
                why = "aborted" if interrupted else f"not done within {timeout:g} s"
                raise DeviceUnavailable(f"slew {why}", device=self.name)
            with self._lock:
                self._altaz = (alt, az % 360.0)
        finally:
            with self._lock:
                self._slewing = False


def _wrap(daz: float) -> float:
    return (daz + 180.0) % 360.0 - 180.0


def _check_altaz(alt: float, az: float, name: str) -> None:
    if not (math.isfinite(alt) and math.isfinite(az) and 0.0 <= alt <= 90.0
            and 0.0 <= az < 360.0):
        raise SettingRejected(f"alt {alt:g}° / az {az:g}° out of range (alt 0..90, az 0..360)",
                              device=name)


@dataclass(eq=False)
class SimulatedDome(_Connectable):
    """A dome (``rotates``) or a roll-off roof: shutter, park, slaving."""

    clock: Clock
    _: KW_ONLY
    shutter_move_s: float = 20.0
    rotates: bool = True
    rotate_s: float = 30.0
    name: str = "dome"
    fail_close: bool = field(init=False, default=False)  # the roof sticks half-way when closing
    fail_open: bool = field(init=False, default=False)  # ... or when opening (fault injection)
    slaved: bool = field(init=False)
    _shutter: ShutterState = field(init=False, default=ShutterState.CLOSED)
    _parked: bool = field(init=False, default=True)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.slaved = self.rotates

    def sky_open(self) -> bool:
        """True when the sky reaches the telescope (no connection needed)."""
        return self._shutter is ShutterState.OPEN

    def shutter(self) -> ShutterState:
        self._require()
        return self._shutter

    def open_shutter(self, *, timeout_s: float | None = None) -> None:
        self._move_shutter(ShutterState.OPENING, ShutterState.OPEN, timeout_s)

    def close_shutter(self, *, timeout_s: float | None = None) -> None:
        self._move_shutter(ShutterState.CLOSING, ShutterState.CLOSED, timeout_s)

    def _move_shutter(self, moving: ShutterState, target: ShutterState,
                      timeout_s: float | None) -> None:
        self._require()
        if self._shutter is target:
            return
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self._shutter = moving
        self.clock.sleep(min(self.shutter_move_s, timeout))
        stuck = self.fail_close if target is ShutterState.CLOSED else self.fail_open
        if stuck:
            self._shutter = ShutterState.ERROR
            raise DeviceUnavailable(f"the shutter stuck while {moving.name.lower()}",
                                    device=self.name)
        if self.shutter_move_s > timeout:
            raise DeviceUnavailable(f"shutter not {target.name.lower()} within {timeout:g} s",
                                    device=self.name)
        self._shutter = target

    def at_park(self) -> bool:
        self._require()
        return self._parked or not self.rotates

    def park(self, *, timeout_s: float | None = None) -> None:
        self._require()
        if self._parked or not self.rotates:
            self._parked = True
            return
        timeout = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self.clock.sleep(min(self.rotate_s, timeout))
        if self.rotate_s > timeout:
            raise DeviceUnavailable(f"dome not parked within {timeout:g} s", device=self.name)
        self._parked = True

    def unpark(self, *, timeout_s: float | None = None) -> None:
        self._require()
        self._parked = False

    def stop_slaving(self) -> None:
        self._require()
        self.slaved = False
