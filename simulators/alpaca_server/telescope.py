"""Alpaca Telescope over the simulated mount (ITelescopeV3, as an Alpaca device): only the
asynchronous slews (``CanSlew``/``CanSlewAltAz`` False, ``CanSlewAltAzAsync``/``CanSlewAsync``
True, as Alpaca requires), run in a background thread while ``Slewing`` reads True; an alt/az
slew is refused while tracking and an RA/Dec slew while not tracking (InvalidOperation), as
ASCOM specifies. Coordinates are topocentric of date (``EquatorialSystem`` 1)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from calibd.drivers.clock import Clock
from calibd.drivers.errors import DeviceError
from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.protocol import AlpacaError, ErrorCode, Params
from calibd.simulators.mount import SimulatedMount

log = logging.getLogger(__name__)


class TelescopeDevice(AlpacaDevice):
    """``telescope/number``: park, async slews, tracking, abort of a :class:`SimulatedMount`."""

    device_type = "telescope"
    type_name = "Telescope"
    interface_version = 3
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

    def __init__(self, mount: SimulatedMount, clock: Clock, *, unique_id: str,
                 number: int = 0) -> None:
        super().__init__(number, name="calibd simulated mount",
                         description="equatorial mount (simulated)", unique_id=unique_id,
                         clock=clock)
        self._mount = mount
        self._connected = False
        self._slewing = False

    def _is_connected(self) -> bool:
        return self._connected

    def _connect(self) -> None:
        self._mount.connect()
        self._connected = True

    def _disconnect(self) -> None:
        self._connected = False

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        status = self._mount.status()
        return (("AtPark", status.parked), ("Slewing", self._slewing),
                ("Tracking", status.tracking), ("RightAscension", status.ra_hours),
                ("Declination", status.dec_deg), ("Altitude", status.alt_deg),
                ("Azimuth", status.az_deg))

    # -- reading ---------------------------------------------------------------------------------

    def get_atpark(self, p: Params) -> bool:
        return self._mount.status().parked

    def get_slewing(self, p: Params) -> bool:
        return self._slewing

    def get_tracking(self, p: Params) -> bool:
        return self._mount.status().tracking

    def get_rightascension(self, p: Params) -> float:
        return self._mount.status().ra_hours

    def get_declination(self, p: Params) -> float:
        return self._mount.status().dec_deg

    def get_altitude(self, p: Params) -> float:
        return self._mount.status().alt_deg

    def get_azimuth(self, p: Params) -> float:
        return self._mount.status().az_deg

    def get_utcdate(self, p: Params) -> str:
        """The device's clock (simulated time), ISO 8601 UTC."""
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def get_sitelatitude(self, p: Params) -> float:
        return self._mount.place.latitude_deg

    def get_sitelongitude(self, p: Params) -> float:
        return self._mount.place.longitude_deg

    def get_siteelevation(self, p: Params) -> float:
        return self._mount.place.elevation_m

    # -- moving ----------------------------------------------------------------------------------

    def put_tracking(self, p: Params) -> None:
        self._refuse_parked("Tracking")
        self._mount.set_tracking(p.boolean("Tracking"))

    def put_unpark(self, p: Params) -> None:
        self._mount.unpark()

    def put_park(self, p: Params) -> None:
        self._background("park", self._mount.park)

    def put_abortslew(self, p: Params) -> None:
        self._refuse_parked("AbortSlew")
        self._mount.abort()

    def put_slewtoaltazasync(self, p: Params) -> None:
        az, alt = p.number("Azimuth"), p.number("Altitude")
        if not (math.isfinite(alt) and math.isfinite(az) and 0 <= alt <= 90 and 0 <= az < 360):
            raise AlpacaError(ErrorCode.INVALID_VALUE, f"Altitude {alt} / Azimuth {az}")
        self._refuse_parked("SlewToAltAzAsync")
        if self._mount.status().tracking:
            raise AlpacaError(ErrorCode.INVALID_OPERATION,
                              "SlewToAltAzAsync while tracking: set Tracking False first")
        self._background("slew", lambda: self._mount.slew_altaz(alt, az, tracking=False))

    def put_slewtocoordinatesasync(self, p: Params) -> None:
        ra, dec = p.number("RightAscension"), p.number("Declination")
        if not (math.isfinite(ra) and math.isfinite(dec) and 0 <= ra < 24 and -90 <= dec <= 90):
            raise AlpacaError(ErrorCode.INVALID_VALUE, f"RightAscension {ra} / Declination {dec}")
        self._refuse_parked("SlewToCoordinatesAsync")
        if not self._mount.status().tracking:
            raise AlpacaError(ErrorCode.INVALID_OPERATION,
                              "SlewToCoordinatesAsync while not tracking: set Tracking True")
        self._background("slew", lambda: self._mount.slew_radec(ra, dec, tracking=True))

    def _refuse_parked(self, what: str) -> None:
        if self._mount.status().parked:
            raise AlpacaError(ErrorCode.INVALID_WHILE_PARKED, f"{what}: the mount is parked")

    def _background(self, what: str, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            except DeviceError as err:
                log.info("%s: %s ended: %s", self.label, what, err)
            finally:
                self._slewing = False

        self._slewing = True
        threading.Thread(target=run, name=f"telescope-{what}", daemon=True).start()
