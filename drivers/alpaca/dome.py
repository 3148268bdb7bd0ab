"""ASCOM Alpaca Dome driver (:class:`drivers.contracts.Dome`): ShutterStatus, OpenShutter /
CloseShutter, Park / AtPark, Slaved. A roll-off roof is an Alpaca Dome with a shutter and
(usually) no azimuth: ``CanPark`` False, so it is always "at park" here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Unpack

from calibd.drivers.alpaca._base import AlpacaDevice, Endpoint
from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceUnavailable, NotSupported

logger = logging.getLogger(__name__)

_POLL_S = 0.2


class AlpacaDome(AlpacaDevice):
    """``Dome`` ``device_number`` on ``host:port``. ``move_timeout_s`` (clock seconds) bounds
    shutter moves and parks unless a call gets its own ``timeout_s``."""

    device_type = "dome"
    _alpyca_module = "alpaca.dome"
    _alpyca_class = "Dome"

    def __init__(self, *, move_timeout_s: float = 300.0, **endpoint: Unpack[Endpoint]) -> None:
        super().__init__(**endpoint)
        self.move_timeout_s = move_timeout_s
        self._can: dict[str, bool] = {}

    def _after_connect(self) -> None:
        for name in ("CanSetShutter", "CanPark", "CanSlave"):
            self._can[name] = bool(self._optional(name))

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
        if not self._can.get("CanSetShutter"):
            raise NotSupported("the dome reports CanSetShutter = False", device=self.label)
        self._call(getattr(self._dev, method), what=f"{method}()", context="setting")

        def reached() -> bool:
            state = self.shutter()
            if state is ShutterState.ERROR:
                raise DeviceUnavailable("the shutter reports Error", device=self.label)
            return state is target

        self._wait(f"shutter {target.name.lower()}", reached, timeout_s)

    def at_park(self) -> bool:
        """AtPark (True where the dome cannot park). Raises DeviceUnavailable."""
        self._require()
        if not self._can.get("CanPark"):
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
        if self._can.get("CanSlave") and bool(self._get("Slaved")):
            self._set("Slaved", False)

    def _wait(self, what: str, done: Callable[[], bool], timeout_s: float | None) -> None:
        self._poll_until(what, done, self.move_timeout_s if timeout_s is None else timeout_s,
                         _POLL_S)
