"""ASCOM Alpaca Telescope driver (:class:`drivers.contracts.Mount`).

Alpaca devices implement only the asynchronous slews (``CanSlew``/``CanSlewAltAz`` are False
for them), so this driver checks ``CanSlewAltAzAsync`` / ``CanSlewAsync`` and polls ``Slewing``.
ASCOM refuses an alt/az slew while tracking and an RA/Dec slew while not tracking, so tracking is
switched off before an alt/az slew and on before an RA/Dec slew, then set as the caller asked.
RA/Dec are passed in the mount's own ``EquatorialSystem`` (topocentric = JNow on most mounts).
"""

from __future__ import annotations

import logging
import math

from calibd.drivers.alpaca._mover import AlpacaMover
from calibd.drivers.contracts import MountState
from calibd.drivers.contracts import MountStatus
from calibd.drivers.errors import SettingRejected

logger = logging.getLogger(__name__)


class AlpacaMount(AlpacaMover):
    """``Telescope`` ``device_number`` on ``host:port``. ``wait_timeout_s`` (clock seconds,
    default 300) bounds slews and parks unless a call gets its own ``timeout_s``."""

    _ascom_type = "Telescope"
    _capabilities = ("CanPark", "CanUnpark", "CanSetTracking", "CanSlewAltAzAsync",
                     "CanSlewAsync")
    _noun = "mount"
    _wait_default_s = 300.0

    def status(self) -> MountStatus:
        """AtPark, Slewing, Tracking and the four coordinates. Raises DeviceUnavailable."""
        self._require()
        if bool(self._get("AtPark")):
            state = MountState.PARKED
        elif bool(self._get("Slewing")):
            state = MountState.SLEWING
        elif bool(self._get("Tracking")):
            state = MountState.TRACKING
        else:
            state = MountState.STOPPED
        return MountStatus(state, float(self._get("RightAscension")),
                           float(self._get("Declination")), float(self._get("Altitude")),
                           float(self._get("Azimuth")))

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """Unpark() (needs CanUnpark) and wait until AtPark is False. Raises NotSupported,
        DeviceUnavailable."""
        self._require()
        if not bool(self._get("AtPark")):
            return
        self._need("CanUnpark")
        self._abort_wait.clear()
        self._call(self._dev.Unpark, what="Unpark()", context="setting")
        self._wait("unpark", lambda: not bool(self._get("AtPark")), timeout_s)

    def park(self, *, timeout_s: float | None = None) -> None:
        """Park() (needs CanPark) and wait until AtPark and not Slewing. Raises NotSupported,
        DeviceUnavailable."""
        self._require()
        if bool(self._get("AtPark")):
            return
        self._need("CanPark")
        self._abort_wait.clear()
        self._call(self._dev.Park, what="Park()", context="setting")
        self._wait("park", lambda: bool(self._get("AtPark")) and not bool(self._get("Slewing")),
                   timeout_s)

    def slew_altaz(self, alt_deg: float, az_deg: float, *, tracking: bool = False,
                   timeout_s: float | None = None) -> None:
        """Tracking off, SlewToAltAzAsync, poll Slewing; then tracking as asked. Raises
        SettingRejected (range, parked), NotSupported, DeviceUnavailable."""
        if not (math.isfinite(alt_deg) and math.isfinite(az_deg) and 0.0 <= alt_deg <= 90.0
                and 0.0 <= az_deg < 360.0):
            raise SettingRejected(f"alt {alt_deg:g}° / az {az_deg:g}° out of range "
                                  "(alt 0..90, az 0..360)", device=self.label)
        self._slew("CanSlewAltAzAsync", "SlewToAltAzAsync", az_deg, alt_deg, during=False,
                   after=tracking, timeout_s=timeout_s)

    def slew_radec(self, ra_hours: float, dec_deg: float, *, tracking: bool = True,
                   timeout_s: float | None = None) -> None:
        """Tracking on, SlewToCoordinatesAsync, poll Slewing; then tracking as asked. Raises
        SettingRejected (range, parked), NotSupported, DeviceUnavailable."""
        if not (math.isfinite(ra_hours) and math.isfinite(dec_deg) and 0.0 <= ra_hours < 24.0
                and -90.0 <= dec_deg <= 90.0):
            raise SettingRejected(f"RA {ra_hours:g} h / Dec {dec_deg:g}° out of range",
                                  device=self.label)
        self._slew("CanSlewAsync", "SlewToCoordinatesAsync", ra_hours, dec_deg, during=True,
                   after=tracking, timeout_s=timeout_s)

    def set_tracking(self, on: bool) -> None:
        """Tracking = on (needs CanSetTracking). Raises SettingRejected (parked), NotSupported,
        DeviceUnavailable."""
        self._require()
        self._refuse_parked()
        if bool(self._get("Tracking")) == on:
            return
        self._need("CanSetTracking")
        self._set("Tracking", on)

    def abort(self) -> None:
        """AbortSlew(); wakes a waiting slew. Never raises."""
        self._abort_wait.set()
        dev = self._dev
        if dev is None:
            return
        try:
            dev.AbortSlew()
        except Exception as err:
            logger.debug("%s: abort: %r", self.label, err)

    # -- internals ---------------------------------------------------------------------------

    def _slew(self, capability: str, method: str, first: float, second: float, *, during: bool,
              after: bool, timeout_s: float | None) -> None:
        """Tracking ``during`` (what ASCOM needs for this slew), ``method(first, second)`` (needs
        ``capability``), wait until not Slewing, then tracking ``after``. Raises SettingRejected
        (parked), NotSupported, DeviceUnavailable."""
        self._require()
        self._refuse_parked()
        self._need(capability)
        self.set_tracking(during)
        self._abort_wait.clear()
        dev = self._dev
        self._call(lambda: getattr(dev, method)(first, second),
                   what=f"{method}({first:g}, {second:g})", context="setting")
        self._wait("slew", lambda: not bool(self._get("Slewing")), timeout_s)
        if after != during:
            self.set_tracking(after)

    def _refuse_parked(self) -> None:
        if bool(self._get("AtPark")):
            raise SettingRejected("the mount is parked: unpark it first", device=self.label)

    def _give_up(self) -> None:
        self.abort()
