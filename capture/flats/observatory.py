"""The observatory around unattended sky flats: open, point, follow the sun, secure.

Before the window: unpark the mount, stop the dome slaving to it, unpark the dome and open the
shutter (or roll-off roof) within ``open_timeout_s``. Then point at the flat spot — altitude
``alt_deg`` and azimuth the sun's plus ``az_from_sun_deg`` (opposite the sun by default, about
where the twilight sky is flattest) — with tracking off so stars trail and drift between frames,
or tracking on with an offset of ``dither_arcmin`` in a new direction before every frame; every
``repoint_s`` the spot is computed again as the sun moves. At the end, or as soon as the safety
monitor says unsafe: stop the mount, close the shutter, park mount and dome, all within
``close_timeout_s``; a shutter that does not close is an alarm (an error event, logged) and
pauses the run with the reason.

Every re-point journals a ``sky-point`` event with the target and where the mount reports it
points (``miss_deg``); securing journals ``sky-secure`` with the time it took.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from dataclasses import field

from calibd.capture.errors import RunPaused
from calibd.capture.plans.cells import Cell
from calibd.capture.plans.model import SkyPointing
from calibd.capture.sequencer.port import CapturePort
from calibd.capture.site import Site
from calibd.capture.site import sun_azimuth_deg
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import Dome
from calibd.drivers.contracts import Mount
from calibd.drivers.contracts import SafetyMonitor
from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceError
from calibd.drivers.pointing import separation_deg

log = logging.getLogger(__name__)


class Unsafe(Exception):
    """The safety monitor said unsafe during sky flats (the observatory has been secured)."""


@dataclass
class FlatObservatory:
    """Mount, dome and safety monitor for one sky-flat session (any of them may be None)."""

    mount: Mount | None
    dome: Dome | None
    safety: SafetyMonitor | None
    site: Site
    options: SkyPointing
    clock: Clock
    port: CapturePort
    secured: bool = field(default=False, init=False)
    _pointed_at: float | None = field(default=None, init=False)
    _spot: tuple[float, float] = field(default=(0.0, 0.0), init=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(18), init=False)

    @property
    def active(self) -> bool:
        return self.mount is not None or self.dome is not None

    # ----- opening -------------------------------------------------------------------------
    def open(self, cell: Cell) -> str | None:
        """Unpark and open within the deadline, then point. Returns why it failed (None when
        open), having secured the observatory again."""
        deadline = self.clock.monotonic() + self.options.open_timeout_s
        try:
            self._check_safe()
            if self.mount is not None:
                self.mount.unpark(timeout_s=self._left(deadline))
            if self.dome is not None:
                self.dome.stop_slaving()
                self.dome.unpark(timeout_s=self._left(deadline))
                self.dome.open_shutter(timeout_s=self._left(deadline))
                if self.dome.shutter() is not ShutterState.OPEN:
                    raise DeviceError(f"the shutter is {self.dome.shutter().name.lower()}")
            self.point(cell)
        except (DeviceError, Unsafe) as err:
            why = f"the observatory did not open: {err}"
            self.port.event("error", "sky-open", why, cell)
            self.secure(cell)
            return why
        return None

    def _left(self, deadline: float) -> float:
        left = deadline - self.clock.monotonic()
        if left <= 0:
            raise DeviceError("past the deadline")
        return left

    # ----- pointing ------------------------------------------------------------------------
    def spot(self) -> tuple[float, float]:
        """(alt, az) of the flat spot now."""
        az = (sun_azimuth_deg(self.site, self.clock.now()) + self.options.az_from_sun_deg) % 360
        return self.options.alt_deg, az

    def point(self, cell: Cell) -> None:
        """Slew to the flat spot (tracking as the star handling wants) and journal the miss.
        Raises DeviceError."""
        if self.mount is None:
            return
        alt, az = self._spot = self.spot()
        dither = self.options.stars == "dither"
        self.mount.slew_altaz(alt, az, tracking=dither, timeout_s=self.options.close_timeout_s)
        self._pointed_at = self.clock.monotonic()
        status = self.mount.status()
        miss = separation_deg(status.alt_deg, status.az_deg, alt, az)
        self.port.event("info", "sky-point", f"flat spot alt {alt:.1f}° az {az:.1f}°: the mount "
                        f"points {miss:.3f}° away", cell,
                        {"alt": alt, "az": az, "mount_alt": status.alt_deg,
                         "mount_az": status.az_deg, "miss_deg": miss})

    def before_frame(self, cell: Cell) -> None:
        """Between frames: check the weather, re-point when due, else offset (dither). Raises
        Unsafe (after securing), RunPaused (a mount that fails)."""
        self._check_safe(cell)
        if self.mount is None:
            return
        try:
            due = (self._pointed_at is None or self.clock.monotonic() - self._pointed_at
                   >= self.options.repoint_s)
            if due:
                self.point(cell)
            elif self.options.stars == "dither":
                self._offset()
        except DeviceError as err:
            self.secure(cell)
            raise RunPaused(f"{cell.describe()}: the mount failed: {err}") from err

    def _offset(self) -> None:
        """Move ``dither_arcmin`` in a random direction around the spot, tracking on."""
        assert self.mount is not None
        alt0, az0 = self._spot
        step = self.options.dither_arcmin / 60.0
        angle = self._rng.uniform(0, 2 * math.pi)
        alt = min(89.5, alt0 + step * math.sin(angle))
        az = (az0 + step * math.cos(angle) / max(0.05, math.cos(math.radians(alt)))) % 360
        self.mount.slew_altaz(alt, az, tracking=True, timeout_s=self.options.close_timeout_s)

    # ----- securing ------------------------------------------------------------------------
    def _check_safe(self, cell: Cell | None = None) -> None:
        if self.safety is None:
            return
        try:
            safe = self.safety.is_safe()
        except DeviceError as err:
            log.warning("safety monitor unreadable, taken as unsafe: %s", err)
            safe = False
        if not safe:
            if cell is not None:
                self.port.event("warning", "sky-unsafe", "the safety monitor says unsafe: "
                                "securing the observatory", cell)
                self.secure(cell)
            raise Unsafe("the safety monitor says unsafe")

    def secure(self, cell: Cell) -> None:
        """Stop the mount, close the shutter, park mount and dome, within ``close_timeout_s``.
        A shutter that does not close is an alarm: an error event, then RunPaused."""
        self.secured = True
        start = self.clock.monotonic()
        deadline = start + self.options.close_timeout_s
        problems: list[str] = []
        if self.mount is not None:
            self.mount.abort()
        if self.dome is not None:
            try:
                self.dome.close_shutter(timeout_s=max(1.0, deadline - self.clock.monotonic()))
            except DeviceError as err:
                problems.append(f"the shutter did not close: {err}")
        for name, dev in (("mount", self.mount), ("dome", self.dome)):
            if dev is None:
                continue
            try:
                dev.park(timeout_s=max(1.0, deadline - self.clock.monotonic()))
            except DeviceError as err:
                problems.append(f"the {name} did not park: {err}")
        took = self.clock.monotonic() - start
        if took > self.options.close_timeout_s:
            problems.append(f"securing took {took:.0f} s, more than "
                            f"{self.options.close_timeout_s:g} s")
        closed = self.dome is None or self._settled_closed(deadline)
        parked = self.mount is None or _parked(self.mount)
        if not closed and not problems:
            problems.append("the shutter does not report closed after parking")
        self.port.event("info" if not problems else "error", "sky-secure",
                        f"observatory secured in {took:.0f} s" if not problems
                        else "ALARM: " + "; ".join(problems), cell,
                        {"seconds": took, "closed": closed, "parked": parked,
                         "problems": problems})
        if problems:
            log.error("ALARM: %s", "; ".join(problems))
            raise RunPaused(f"{cell.describe()}: ALARM: " + "; ".join(problems))

    def _settled_closed(self, deadline: float) -> bool:
        """Whether the shutter reports closed once it stops moving (parking may cycle it: the
        INDI dome re-closes on park), waiting at most until ``deadline`` (monotonic s)."""
        assert self.dome is not None
        while True:
            try:
                state = self.dome.shutter()
            except DeviceError:
                return False
            if state is not ShutterState.CLOSING or self.clock.monotonic() >= deadline:
                return state is ShutterState.CLOSED
            self.clock.sleep(SETTLE_POLL_S)


SETTLE_POLL_S = 0.5


def _parked(mount: Mount) -> bool:
    try:
        return mount.status().parked
    except DeviceError:
        return False
