"""ASCOM Alpaca Dome driver (:class:`drivers.contracts.Dome`): ShutterStatus, OpenShutter /
CloseShutter, Park / AtPark, Slaved. A roll-off roof is an Alpaca Dome with a shutter and
(usually) no azimuth: ``CanPark`` False, so it is always "at park" here."""

from __future__ import annotations

import logging

from calibd.drivers.alpaca._mover import AlpacaMover
from calibd.drivers.contracts import ShutterState

logger = logging.getLogger(__name__)


class AlpacaDome(AlpacaMover):
    """``Dome`` ``device_number`` on ``host:port``. ``wait_timeout_s`` (clock seconds, default
    300) bounds shutter moves and parks unless a call gets its own ``timeout_s``."""

    _ascom_type = "Dome"
    _capabilities = ("CanSetShutter", "CanPark", "CanSlave")
    _noun = "dome"
    _wait_default_s = 300.0

    def shutter(self) -> ShutterState:
        """ShutterStatus. Raises DeviceUnavailable."""
        self._require()
        value = int(self._get("ShutterStatus"))
        try:
            return ShutterState(value)
        except ValueError:
            return ShutterState.ERROR

    def open_shutter(self, *, timeout_s: float | None = None) -> None:
        """OpenShutter() and wait for shutterOpen. Raises NotSupported, DeviceUnavailable
        (Error status, past the deadline)."""
        self._move("OpenShutter", ShutterState.OPEN, timeout_s)

    def close_shutter(self, *, timeout_s: float | None = None) -> None:
        """CloseShutter() and wait for shutterClosed. Raises NotSupported, DeviceUnavailable."""
        self._move("CloseShutter", ShutterState.CLOSED, timeout_s)

    def _move(self, method: str, target: ShutterState, timeout_s: float | None) -> None:
        self._require()
        if self.shutter() is target:
            return
        self._need("CanSetShutter")
        self._command_until(method, "shutter", self.shutter, target, ShutterState.ERROR,
                            timeout_s)

    def at_park(self) -> bool:
        """AtPark (True where the dome cannot park). Raises DeviceUnavailable."""
        self._require()
        if not self._can("CanPark"):
            return True
        return bool(self._get("AtPark"))

    def park(self, *, timeout_s: float | None = None) -> None:
        """Park() and wait for AtPark (a no-op where the dome cannot park). Raises
        DeviceUnavailable."""
        self._require()
        if self.at_park():
            return
        self._call(self._dev.Park, what="Park()", context="setting")
        self._wait("park", lambda: bool(self._get("AtPark")) and not bool(self._get("Slewing")),
                   timeout_s)

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """ASCOM domes have no Unpark: the next move leaves the park position. A no-op."""
        self._require()

    def stop_slaving(self) -> None:
        """Slaved = False where the dome can slave. Raises DeviceUnavailable."""
        self._require()
        if self._can("CanSlave") and bool(self._get("Slaved")):
            self._set("Slaved", False)
