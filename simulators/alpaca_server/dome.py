"""Alpaca Dome over the simulated dome (interface version 2): the shutter moves in clock time in
a background thread while ShutterStatus reads Opening/Closing, as on a real dome; Park and
Slaved work; rotation (SlewToAzimuth, FindHome, altitude) is NotImplemented (the Can* flags say
so)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from calibd.drivers.clock import Clock
from calibd.drivers.errors import DeviceError
from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.mount import SimulatedDome

log = logging.getLogger(__name__)


class DomeDevice(AlpacaDevice):
    """``dome/number``: shutter, park and slaving of a :class:`SimulatedDome`."""

    device_type = "dome"
    type_name = "Dome"
    interface_version = 2
    constants: ClassVar[Mapping[str, Any]] = {
        "athome": False,
        "canfindhome": False,
        "canpark": True,
        "cansetaltitude": False,
        "cansetazimuth": False,
        "cansetpark": False,
        "cansetshutter": True,
        "canslave": True,
        "cansyncazimuth": False,
    }

    def __init__(self, dome: SimulatedDome, clock: Clock, *, unique_id: str,
                 number: int = 0) -> None:
        super().__init__(number, name="calibd simulated dome",
                         description="dome with a shutter (simulated)", unique_id=unique_id,
                         clock=clock)
        self._dome = dome
        self._connected = False
        self._moving = False

    def _is_connected(self) -> bool:
        return self._connected

    def _connect(self) -> None:
        self._dome.connect()
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("AtPark", self._dome.at_park()), ("ShutterStatus", self._dome.shutter().value),
                ("Slewing", self._moving))

    def get_shutterstatus(self, p: Params) -> int:
        return self._dome.shutter().value

    def get_atpark(self, p: Params) -> bool:
        return self._dome.at_park()

    def get_slewing(self, p: Params) -> bool:
        return self._moving

    def get_slaved(self, p: Params) -> bool:
        return self._dome.slaved

    def put_slaved(self, p: Params) -> None:
        if p.boolean("Slaved"):
            self._dome.slaved = True
        else:
            self._dome.stop_slaving()

    def put_openshutter(self, p: Params) -> None:
        self._background("open", self._dome.open_shutter)

    def put_closeshutter(self, p: Params) -> None:
        self._background("close", self._dome.close_shutter)

    def put_park(self, p: Params) -> None:
        self._dome.unpark()  # a park is a move: leave the park position, then go back to it
        self._background("park", self._dome.park)

    def put_abortslew(self, p: Params) -> None:
        """The simulated dome finishes a started move (nothing to stop half-way)."""

    def _background(self, what: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except DeviceError as err:
                log.warning("%s: %s failed: %s", self.label, what, err)
            finally:
                self._moving = False

        self._moving = True
        threading.Thread(target=run, name=f"dome-{what}", daemon=True).start()
