"""The simulated observatory as INDI devices, served by a camera double's process: a telescope,
a dome and a filter wheel with the standard INDI properties the real simulators define
(``indi_simulator_telescope``, ``indi_simulator_dome``, ``indi_simulator_wheel``; see
docs/field-notes-2.md §C), backed by :mod:`simulators.mount` and
:mod:`simulators.accessories` on the camera's clock. The camera then sees the sky of
:mod:`simulators.observatory`: twilight only through an open dome, through the filter in the
beam, stars where the telescope points (trailed while it does not track).

Behaviour copied from the real simulators: a goto goes Busy and ends Ok with tracking switched
on (``TELESCOPE_TRACK_STATE`` Busy while tracking); a goto while parked is answered Idle with
"Please unpark the mount…"; a park goes Busy until parked, and an unpark during it is answered
Alert and at once Ok with PARK on (parked where it stopped); the shutter switch turns at once and
its state is Busy while it moves, Ok when there (Alert on a fault); ``FILTER_SLOT`` is Busy while
the wheel turns. Moves run on their own threads; the telescope reports its coordinates every
poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Generic
from typing import TypeVar

from calibd.drivers.errors import DeviceError
from calibd.drivers.pointing import Place
from calibd.simulators.accessories import DEFAULT_FILTERS
from calibd.simulators.accessories import SimulatedFilterWheel
from calibd.simulators.clock import ScaledClock
from calibd.simulators.indi_doubles.protocol import DriverDevice
from calibd.simulators.indi_doubles.protocol import Element
from calibd.simulators.indi_doubles.protocol import Vector
from calibd.simulators.indi_doubles.protocol import Writer
from calibd.simulators.indi_doubles.protocol import connection_vectors
from calibd.simulators.mount import SimulatedDome
from calibd.simulators.mount import SimulatedMount
from calibd.simulators.observatory import SimulatedObservatory
from calibd.simulators.observatory import build_observatory
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.sky import SimulatedSky
from calibd.simulators.sky import StarField
from calibd.simulators.sky import sun_altitude_deg

TELESCOPE = "Telescope Double"
DOME = "Dome Double"
WHEEL = "Filter Double"
MAIN = "Main Control"
SITE = "Site Management"
OPTIONS = "Options"


@dataclass(frozen=True)
class ObservatoryDevices:
    """What the camera double's process serves besides the camera."""

    observatory: SimulatedObservatory
    devices: tuple[DeviceDouble[Any], ...]


def build(profile: SensorProfile, clock: ScaledClock, place: Place, writer: Writer,
          polling_ms: int = 250) -> ObservatoryDevices:
    """The simulated observatory (sky, stars, mount, dome, wheel) for ``profile`` at ``place``
    on ``clock``, and its telescope, dome and wheel as INDI devices writing to ``writer``."""
    mount = SimulatedMount(clock, place, slew_deg_per_s=4.0, name=TELESCOPE)
    dome = SimulatedDome(clock, shutter_move_s=20.0, rotate_s=20.0, name=DOME)
    wheel = SimulatedFilterWheel(clock, DEFAULT_FILTERS, seconds_per_slot=1.0, name=WHEEL)
    for device in (mount, dome, wheel):
        device.connect()  # the INDI devices gate access with their own CONNECTION

    # the sun seen from the mount's site as it is now (a client may set GEOGRAPHIC_COORD)
    sky = SimulatedSky(clock, lambda when: sun_altitude_deg(mount.place, when))
    obs = build_observatory(profile, clock, wheel=wheel, sky=sky, mount=mount, dome=dome,
                            stars=StarField())
    sky.flux()  # astropy's start-up (seconds) before serving, not in the first exposure
    devices = (TelescopeDouble(mount, writer, polling_ms), DomeDouble(dome, writer, polling_ms),
               WheelDouble(wheel, writer, polling_ms))
    return ObservatoryDevices(obs, devices)


S = TypeVar("S")


class DeviceDouble(DriverDevice, Generic[S]):
    """One INDI device (see :class:`DriverDevice`) over one simulator, :attr:`sim`: CONNECTION
    and DRIVER_INFO from the start, the rest (built at the first connect, kept across
    disconnects) once connected. Moves run on threads of their own."""

    name = ""
    driver_exec = ""
    interface = "0"

    def __init__(self, sim: S, writer: Writer, polling_ms: int) -> None:
        self.sim = sim
        self.polling_ms = polling_ms
        super().__init__(self.name, writer,
                         connection_vectors(self.name, self.driver_exec, "1.0", self.interface))

    def _after(self) -> list[Vector]:
        raise NotImplementedError

    def poll_interval_s(self) -> float:
        return self.polling_ms / 1000.0

    def on_connect(self) -> None:
        if not self._own():  # built once: they keep the device's state
            for vec in self._after():
                self._add(vec)
        for vec in self._own():
            self._define(vec)

    def on_disconnect(self) -> None:  # its own properties go until it connects again
        for vec in self._own():
            self._undefine(vec)

    def _move(self, work: Callable[[], None]) -> None:
        """Run ``work`` on a thread of its own (called under the lock, which ``work`` takes
        to report)."""
        threading.Thread(target=work, name=f"{self.name} move", daemon=True).start()

    def _finish(self, vec: Vector, move: Callable[[], None]) -> None:
        """Run a move (blocking, clock time) and report ``vec`` Ok, or Alert with the fault."""
        try:
            move()
        except DeviceError as err:
            with self.lock:
                self._set(vec, "Alert", str(err))
            return
        with self.lock:
            self._set(vec, "Ok")

    def on_switches(self, vec: Vector, on: list[str], members: list[tuple[str, str]]) -> None:
        if on:  # a switch turned off alone changes nothing
            self.on_switch(vec, on[0])

    def on_switch(self, vec: Vector, on: str) -> None:
        """``on``: the first element of ``vec`` the client turns On."""
        vec.select(on)
        self._set(vec, "Ok")


def _switch(name: str, label: str, group: str, on: str, *names: str,
            rule: str = "OneOfMany", state: str = "Idle") -> Vector:
    return Vector("switch", name, label, group, "rw", [Element(n, n, n == on) for n in names],
                  rule=rule, state=state)


class TelescopeDouble(DeviceDouble[SimulatedMount]):
    """``EQUATORIAL_EOD_COORD`` (JNow), ``ON_COORD_SET``, ``TELESCOPE_TRACK_STATE``,
    ``TELESCOPE_PARK``, ``TELESCOPE_ABORT_MOTION``, ``GEOGRAPHIC_COORD``."""

    name = TELESCOPE
    driver_exec = "indi_simulator_telescope"
    interface = "5"  # TELESCOPE | GUIDER
    _parks = 0  # TELESCOPE_PARK requests so far

    def _after(self) -> list[Vector]:
        ra, dec = self.sim.radec()
        place = self.sim.place
        return [
            Vector("number", "EQUATORIAL_EOD_COORD", "Eq. Coordinates", MAIN, "rw", [
                Element("RA", "RA (hh:mm:ss)", ra, 0, 24, 0, "%010.6m"),
                Element("DEC", "DEC (dd:mm:ss)", dec, -90, 90, 0, "%010.6m")],
                after_range_alert=None),
            Vector("number", "TARGET_EOD_COORD", "Slew Target", "Motion Control", "ro", [
                Element("RA", "RA (hh:mm:ss)", ra, 0, 24, 0, "%010.6m"),
                Element("DEC", "DEC (dd:mm:ss)", dec, -90, 90, 0, "%010.6m")]),
            _switch("ON_COORD_SET", "On Set", MAIN, "TRACK", "TRACK", "SLEW", "SYNC"),
            _switch("TELESCOPE_TRACK_STATE", "Tracking", MAIN, "TRACK_OFF", "TRACK_ON",
                    "TRACK_OFF"),
            _switch("TELESCOPE_PARK", "Parking", SITE, "PARK", "PARK", "UNPARK", state="Ok"),
            _switch("TELESCOPE_ABORT_MOTION", "Abort Motion", MAIN, "", "ABORT",
                    rule="AtMostOne"),
            Vector("number", "GEOGRAPHIC_COORD", "Scope Location", SITE, "rw", [
                Element("LAT", "Lat (dd:mm:ss)", place.latitude_deg, -90, 90, 0),
                Element("LONG", "Lon (dd:mm:ss)", place.longitude_deg % 360.0, 0, 360, 0),
                Element("ELEV", "Elevation (m)", place.elevation_m, -200, 10000, 0)],
                after_range_alert=None),
        ]

    def poll(self) -> None:
        coord = self.props["EQUATORIAL_EOD_COORD"]
        ra, dec = self.sim.radec()
        if (ra, dec) != (coord["RA"].value, coord["DEC"].value):
            coord["RA"].value, coord["DEC"].value = ra, dec
            self._set(coord)

    def _parked(self) -> bool:
        return self.props["TELESCOPE_PARK"].on() == "PARK"

    def on_number(self, vec: Vector, values: dict[str, float]) -> None:
        if vec.name == "GEOGRAPHIC_COORD":
            super().on_number(vec, values)
            lon = float(vec["LONG"].value)
            self.sim.place = Place(float(vec["LAT"].value), lon - 360.0 if lon > 180 else lon,
                                   float(vec["ELEV"].value))
            return
        if vec.name != "EQUATORIAL_EOD_COORD":
            super().on_number(vec, values)
            return
        if self._parked():
            self._set(vec, "Idle", "Please unpark the mount before issuing any motion/sync "
                      "commands.")
            return
        ra = values.get("RA", float(vec["RA"].value))
        dec = values.get("DEC", float(vec["DEC"].value))
        target = self.props["TARGET_EOD_COORD"]
        target["RA"].value, target["DEC"].value = ra, dec
        self._set(target, "Ok")
        self._set(vec, "Busy")
        self._move(lambda: self._goto(ra, dec))

    def _goto(self, ra: float, dec: float) -> None:
        try:
            self.sim.slew_radec(ra, dec, tracking=True)
        except DeviceError as err:
            with self.lock:
                self._set(self.props["EQUATORIAL_EOD_COORD"], "Idle", str(err))
            return
        with self.lock:  # the real simulator tracks after every goto, and says so first
            self._report_tracking(True)
            coord = self.props["EQUATORIAL_EOD_COORD"]
            coord["RA"].value, coord["DEC"].value = self.sim.radec()
            self._set(coord, "Ok")

    def _report_tracking(self, on: bool) -> None:
        track = self.props["TELESCOPE_TRACK_STATE"]
        track.select("TRACK_ON" if on else "TRACK_OFF")
        self._set(track, "Busy" if on else "Idle")

    def on_switch(self, vec: Vector, on: str) -> None:
        if vec.name == "TELESCOPE_ABORT_MOTION":
            self.sim.abort()
            self._set(vec, "Ok")
            self._set(self.props["EQUATORIAL_EOD_COORD"], "Idle")
            return
        if vec.name == "TELESCOPE_TRACK_STATE":
            if self._parked():
                self._set(vec, "Alert", "the mount is parked")
                return
            self.sim.set_tracking(on == "TRACK_ON")
            self._report_tracking(on == "TRACK_ON")
            return
        if vec.name == "TELESCOPE_PARK":
            self._parks += 1  # a park under way no longer reports
            if on == "UNPARK" and vec.state == "Busy":
                # As the real simulator: the park is aborted (Alert, neither switch on), and
                # the mount is at once parked where it stopped (Ok, PARK on).
                self.sim.park_here()
                for element in vec.elements:
                    element.value = False
                self._set(vec, "Alert", "Parking/Unparking aborted.")
                vec.select("PARK")
                self._set(vec, "Ok")
                return
            if on == "UNPARK":
                self.sim.unpark()
                vec.select("UNPARK")
                self._set(vec, "Ok")
                return
            vec.select("PARK")
            self._set(vec, "Busy")
            run = self._parks
            self._move(lambda: self._park(run))
            return
        super().on_switch(vec, on)

    def _park(self, run: int) -> None:
        """Park (blocking) and report it, unless another ``TELESCOPE_PARK`` came meanwhile
        (``run`` is the park's number in :attr:`_parks`)."""
        try:
            self.sim.park()
        except DeviceError as err:
            with self.lock:
                if run == self._parks:
                    self._set(self.props["TELESCOPE_PARK"], "Alert", str(err))
            return
        with self.lock:
            if run == self._parks:
                self._set(self.props["TELESCOPE_PARK"], "Ok")
                self._report_tracking(False)


class DomeDouble(DeviceDouble[SimulatedDome]):
    """``DOME_SHUTTER``, ``DOME_PARK``, ``DOME_AUTOSYNC``, ``DOME_ABORT_MOTION``."""

    name = DOME
    driver_exec = "indi_simulator_dome"
    interface = "32"  # DOME

    def _after(self) -> list[Vector]:
        return [
            _switch("DOME_SHUTTER", "Shutter", MAIN, "SHUTTER_CLOSE", "SHUTTER_OPEN",
                    "SHUTTER_CLOSE"),
            _switch("DOME_PARK", "Parking", SITE, "PARK", "PARK", "UNPARK", state="Ok"),
            _switch("DOME_AUTOSYNC", "Slaving", OPTIONS, "DOME_AUTOSYNC_DISABLE",
                    "DOME_AUTOSYNC_ENABLE", "DOME_AUTOSYNC_DISABLE"),
            _switch("DOME_ABORT_MOTION", "Abort Motion", MAIN, "", "ABORT", rule="AtMostOne"),
        ]

    def on_switch(self, vec: Vector, on: str) -> None:
        if vec.name == "DOME_SHUTTER":
            vec.select(on)
            self._set(vec, "Busy")
            move = self.sim.open_shutter if on == "SHUTTER_OPEN" else self.sim.close_shutter
            self._move(lambda: self._finish(vec, move))
            return
        if vec.name == "DOME_PARK":
            vec.select(on)
            if on == "UNPARK":
                self.sim.unpark()
                self._set(vec, "Ok")
                return
            self._set(vec, "Busy")
            self._move(lambda: self._finish(vec, self.sim.park))
            return
        if vec.name == "DOME_AUTOSYNC":
            self.sim.slaved = on == "DOME_AUTOSYNC_ENABLE"
        super().on_switch(vec, on)


class WheelDouble(DeviceDouble[SimulatedFilterWheel]):
    """``FILTER_SLOT`` (1-based) and ``FILTER_NAME``."""

    name = WHEEL
    driver_exec = "indi_simulator_wheel"
    interface = "16"  # FILTER

    def _after(self) -> list[Vector]:
        names = self.sim.names
        slot = names.index(self.sim.current() or names[0]) + 1
        return [
            Vector("number", "FILTER_SLOT", "Filter Slot", MAIN, "rw",
                   [Element("FILTER_SLOT_VALUE", "Filter", slot, 1, len(names), 1)],
                   after_range_alert=None),
            Vector("text", "FILTER_NAME", "Filter", MAIN, "rw",
                   [Element(f"FILTER_SLOT_NAME_{i}", f"Filter#{i}", n)
                    for i, n in enumerate(names, 1)]),
        ]

    def on_number(self, vec: Vector, values: dict[str, float]) -> None:
        if vec.name != "FILTER_SLOT" or "FILTER_SLOT_VALUE" not in values:
            super().on_number(vec, values)
            return
        slot = round(values["FILTER_SLOT_VALUE"])
        vec["FILTER_SLOT_VALUE"].value = slot
        self._set(vec, "Busy")
        name = self.sim.names[slot - 1]
        self._move(lambda: self._finish(vec, lambda: self.sim.select(name)))
