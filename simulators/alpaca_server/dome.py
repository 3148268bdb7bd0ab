"""Alpaca Dome over the simulated dome (interface version 2): the shutter moves in clock time in
a background thread while ShutterStatus reads Opening/Closing, as on a real dome; Park and
Slaved work; rotation (SlewToAzimuth, FindHome, altitude) is NotImplemented (the Can* flags say
so)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from calibd.simulators.alpaca_server.device import SimulatorDevice
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.mount import SimulatedDome


class DomeDevice(SimulatorDevice[SimulatedDome]):
    """``dome/number``: shutter, park and slaving of a :class:`SimulatedDome`."""

    type_name = "Dome"
    interface_version = 2
    sim_name = "calibd simulated dome"
    sim_description = "dome with a shutter (simulated)"
    disconnects_sim = False
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

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        return (("AtPark", self.sim.at_park()), ("ShutterStatus", self.sim.shutter().value),
                ("Slewing", self._moving))

    def get_shutterstatus(self, p: Params) -> int:
        return self.sim.shutter().value

    def get_atpark(self, p: Params) -> bool:
        return self.sim.at_park()

    def get_slewing(self, p: Params) -> bool:
        return self._moving

    def get_slaved(self, p: Params) -> bool:
        return self.sim.slaved

    def put_slaved(self, p: Params) -> None:
        if p.boolean("Slaved"):
            self.sim.slaved = True
        else:
            self.sim.stop_slaving()

    def put_openshutter(self, p: Params) -> None:
        self._move_in_background("open", self.sim.open_shutter)

    def put_closeshutter(self, p: Params) -> None:
        self._move_in_background("close", self.sim.close_shutter)

    def put_park(self, p: Params) -> None:
        self.sim.unpark()  # a park is a move: leave the park position, then go back to it
        self._move_in_background("park", self.sim.park)

    def put_abortslew(self, p: Params) -> None:
        """The simulated dome finishes a started move (nothing to stop half-way)."""
