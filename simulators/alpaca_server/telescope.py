"""Alpaca Telescope over the simulated mount (ITelescopeV3, as an Alpaca device): only the
asynchronous slews (``CanSlew``/``CanSlewAltAz`` False, ``CanSlewAltAzAsync``/``CanSlewAsync``
True, as Alpaca requires), run in a background thread while ``Slewing`` reads True; an alt/az
slew is refused while tracking and an RA/Dec slew while not tracking (InvalidOperation), as
ASCOM specifies. Coordinates are topocentric of date (``EquatorialSystem`` 1)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from calibd.simulators.alpaca_server.device import SimulatorDevice
from calibd.simulators.alpaca_server.protocol import AlpacaError
from calibd.simulators.alpaca_server.protocol import ErrorCode
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.mount import SimulatedMount


class TelescopeDevice(SimulatorDevice[SimulatedMount]):
    """``telescope/number``: park, async slews, tracking, abort of a :class:`SimulatedMount`."""

    type_name = "Telescope"
    interface_version = 3
    sim_name = "calibd simulated mount"
    sim_description = "equatorial mount (simulated)"
    disconnects_sim = False
    move_error_level = logging.INFO  # an aborted slew ends this way
    constants: ClassVar[Mapping[str, Any]] = {
        "alignmentmode": 2,  # German polar
        "athome": False,
        "canfindhome": False,
        "canpark": True,
        "canpulseguide": False,
        "cansetdeclinationrate": False,
        "cansetguiderates": False,
        "cansetpark": False,
        "cansetpierside": False,
        "cansetrightascensionrate": False,
        "cansettracking": True,
        "canslew": False,
        "canslewaltaz": False,
        "canslewaltazasync": True,
        "canslewasync": True,
        "cansync": False,
        "cansyncaltaz": False,
        "canunpark": True,
        "doesrefraction": False,
        "equatorialsystem": 1,  # topocentric (JNow)
    }

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        status = self.sim.status()
        return (("AtPark", status.parked), ("Slewing", self._moving),
                ("Tracking", status.tracking), ("RightAscension", status.ra_hours),
                ("Declination", status.dec_deg), ("Altitude", status.alt_deg),
                ("Azimuth", status.az_deg))

    # -- reading ---------------------------------------------------------------------------------

    def get_atpark(self, p: Params) -> bool:
        return self.sim.status().parked

    def get_slewing(self, p: Params) -> bool:
        return self._moving

    def get_tracking(self, p: Params) -> bool:
        return self.sim.status().tracking

    def get_rightascension(self, p: Params) -> float:
        return self.sim.status().ra_hours

    def get_declination(self, p: Params) -> float:
        return self.sim.status().dec_deg

    def get_altitude(self, p: Params) -> float:
        return self.sim.status().alt_deg

    def get_azimuth(self, p: Params) -> float:
        return self.sim.status().az_deg

    def get_utcdate(self, p: Params) -> str:
        """The device's clock (simulated time), ISO 8601 UTC."""
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def get_sitelatitude(self, p: Params) -> float:
        return self.sim.place.latitude_deg

    def get_sitelongitude(self, p: Params) -> float:
        return self.sim.place.longitude_deg

    def get_siteelevation(self, p: Params) -> float:
        return self.sim.place.elevation_m

    # -- moving ----------------------------------------------------------------------------------

    def put_tracking(self, p: Params) -> None:
        self._refuse_parked("Tracking")
        self.sim.set_tracking(p.boolean("Tracking"))

    def put_unpark(self, p: Params) -> None:
        self.sim.unpark()

    def put_park(self, p: Params) -> None:
        self._move_in_background("park", self.sim.park)

    def put_abortslew(self, p: Params) -> None:
        self._refuse_parked("AbortSlew")
        self.sim.abort()

    def put_slewtoaltazasync(self, p: Params) -> None:
        az, alt = p.number("Azimuth"), p.number("Altitude")
        if not (math.isfinite(alt) and math.isfinite(az) and 0 <= alt <= 90 and 0 <= az < 360):
            raise AlpacaError(ErrorCode.INVALID_VALUE, f"Altitude {alt} / Azimuth {az}")
        self._refuse_parked("SlewToAltAzAsync")
        if self.sim.status().tracking:
            raise AlpacaError(ErrorCode.INVALID_OPERATION,
                              "SlewToAltAzAsync while tracking: set Tracking False first")
        self._move_in_background("slew", lambda: self.sim.slew_altaz(alt, az, tracking=False))

    def put_slewtocoordinatesasync(self, p: Params) -> None:
        ra, dec = p.number("RightAscension"), p.number("Declination")
        if not (math.isfinite(ra) and math.isfinite(dec) and 0 <= ra < 24 and -90 <= dec <= 90):
            raise AlpacaError(ErrorCode.INVALID_VALUE, f"RightAscension {ra} / Declination {dec}")
        self._refuse_parked("SlewToCoordinatesAsync")
        if not self.sim.status().tracking:
            raise AlpacaError(ErrorCode.INVALID_OPERATION,
                              "SlewToCoordinatesAsync while not tracking: set Tracking True")
        self._move_in_background("slew", lambda: self.sim.slew_radec(ra, dec, tracking=True))

    def _refuse_parked(self, what: str) -> None:
        if self.sim.status().parked:
            raise AlpacaError(ErrorCode.INVALID_WHILE_PARKED, f"{what}: the mount is parked")
