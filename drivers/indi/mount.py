"""INDI telescope mount (``EQUATORIAL_EOD_COORD``, ``TELESCOPE_PARK``, ``TELESCOPE_TRACK_STATE``).

INDI mounts speak JNow RA/Dec only: alt/az targets are converted with :mod:`drivers.pointing`
(astropy, offline) for the configured site, which is also written to the device's
``GEOGRAPHIC_COORD`` so both sides agree on the sky. The telescope simulator (and other INDI
drivers) switch tracking on after every goto, so each slew sets ``TELESCOPE_TRACK_STATE``
afterwards to what the caller asked for. A slew is over when ``EQUATORIAL_EOD_COORD`` leaves
Busy; a park when ``TELESCOPE_PARK`` does.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Unpack

from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import MountState
from calibd.drivers.contracts import MountStatus
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi._conn import PropSnapshot
from calibd.drivers.indi._device import Endpoint
from calibd.drivers.indi._device import IndiDevice
from calibd.drivers.indi._state import ConnState
from calibd.drivers.pointing import Place
from calibd.drivers.pointing import altaz_to_radec
from calibd.drivers.pointing import load_frames
from calibd.drivers.pointing import radec_to_altaz

log = logging.getLogger(__name__)

DEFAULT_MOVE_TIMEOUT_S = 180.0  # real seconds for a slew or a park when the caller gives none
ARRIVED_DEG = 0.2  # a slew is over within this distance of its target (RA along the equator)
ABORT_SETTLE_S = 5.0  # real seconds an aborted move waits for the device to report it stopped
# Real seconds a device gets to answer a request properly when what it reported since looks like
# a refusal without an Alert: a routine report sent before the request may arrive after it, just
# ahead of the device's Busy (the telescope simulator sends that within a millisecond).
REFUSAL_GRACE_S = 1.0
MAX_REFUSAL_GRACE_S = 10.0  # whatever POLLING_PERIOD a driver reports


def _not_busy(snap: PropSnapshot | None) -> bool | None:
    return True if snap is None or snap.state != "Busy" else None


def _idle_refusal(st: ConnState, device: str, snap: PropSnapshot, before: int) -> str | None:
    """The device's latest warning or error when ``snap`` reads as a request refused without an
    Alert: reported Idle since connection version ``before`` (the request), not Busy since, and
    the device logged a ``[WARNING]`` or ``[ERROR]`` since (INDI's logger prefixes; an
    ``[INFO] Slewing to ...`` of a goto it accepted does not count). The telescope simulator
    refuses a goto while parked so ("[WARNING] Please unpark the mount ...", then
    EQUATORIAL_EOD_COORD Idle). None otherwise."""
    if snap.version <= before or snap.state != "Idle" or snap.busy_since(before):
        return None
    said = [m for m in st.messages_since(device, before) if "[WARNING]" in m or "[ERROR]" in m]
    return said[-1] if said else None


def _at(snap: PropSnapshot, ra_hours: float, dec_deg: float) -> bool:
    dra = abs(((snap.number("RA") - ra_hours) * 15.0 + 180.0) % 360.0 - 180.0)
    return dra * math.cos(math.radians(dec_deg)) < ARRIVED_DEG and (
        abs(snap.number("DEC") - dec_deg) < ARRIVED_DEG)


class IndiMount(IndiDevice):
    """A mount satisfying :class:`drivers.contracts.Mount`.

    ``IndiMount(host=..., port=..., device="Telescope Simulator", latitude_deg=...,
    longitude_deg=..., elevation_m=...)``; the site is sent to the device on connect.
    Timeouts are real seconds (an INDI device runs in real time). Alt/az are converted for the
    time of ``clock`` (default the real one; a simulated clock the device shares).
    """

    _required = ("EQUATORIAL_EOD_COORD", "TELESCOPE_PARK", "TELESCOPE_TRACK_STATE",
                 "TELESCOPE_ABORT_MOTION", "ON_COORD_SET")

    def __init__(self, *, latitude_deg: float, longitude_deg: float, elevation_m: float = 0.0,
                 clock: Clock | None = None, **endpoint: Unpack[Endpoint]) -> None:
        super().__init__(**endpoint)
        self.place = Place(latitude_deg, longitude_deg, elevation_m)
        self.clock: Clock = clock or RealClock()
        self._aborted = threading.Event()

    def connect(self) -> None:
        """Connect server and device (idempotent) and tell it the site. Raises
        DeviceUnavailable."""
        if self.connected:
            return
        self._connect_device()
        if self._prop("GEOGRAPHIC_COORD") is not None:
            try:
                self._set_number("GEOGRAPHIC_COORD", {
                    "LAT": self.place.latitude_deg,
                    "LONG": self.place.longitude_deg % 360.0,
                    "ELEV": self.place.elevation_m})
            except SettingRejected as err:
                raise DeviceUnavailable(f"the mount refused the site: {err}",
                                        device=self.device) from err
        load_frames(self.place)  # astropy's start-up now, not in the first slew

    # ------------------------------------------------------------------ reading

    def status(self) -> MountStatus:
        """From the last reported properties (no I/O but the conversion). Raises
        DeviceUnavailable."""
        self._require()
        coord, park, track = (self._prop(n) for n in
                              ("EQUATORIAL_EOD_COORD", "TELESCOPE_PARK", "TELESCOPE_TRACK_STATE"))
        if coord is None or park is None or track is None:
            raise DeviceUnavailable("mount properties missing", device=self.device)
        ra, dec = coord.number("RA"), coord.number("DEC")
        alt, az = radec_to_altaz(self.place, self.clock.now(), ra, dec)
        if park.is_on("PARK") and park.state != "Busy":
            state = MountState.PARKED
        elif coord.state == "Busy" or park.state == "Busy":
            state = MountState.SLEWING
        elif track.is_on("TRACK_ON"):
            state = MountState.TRACKING
        else:
            state = MountState.STOPPED
        return MountStatus(state, ra, dec, alt, az)

    def _parked(self) -> bool:
        park = self._prop("TELESCOPE_PARK")
        return park is not None and park.is_on("PARK")

    # ------------------------------------------------------------------ moves

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """TELESCOPE_PARK=UNPARK (answered at once). Raises DeviceUnavailable."""
        self._require()
        if not self._parked():
            return
        self._set_switch("TELESCOPE_PARK", "UNPARK", timeout_s=timeout_s)

    def park(self, *, timeout_s: float | None = None) -> None:
        """TELESCOPE_PARK=PARK, then wait until the property leaves Busy with PARK on.
        Raises DeviceUnavailable (refused, aborted, past the deadline: then aborted)."""
        self._require()
        if self._parked() and self._prop_state("TELESCOPE_PARK") != "Busy":
            return
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        self._aborted.clear()
        before = self._require().version()
        try:
            self._set_switch("TELESCOPE_PARK", "PARK", accept_busy=True, timeout_s=timeout)
        except SettingRejected as err:
            raise DeviceUnavailable(str(err), device=self.device) from err
        self._wait_done("TELESCOPE_PARK", before, timeout, "park", element="PARK")

    def slew_altaz(self, alt_deg: float, az_deg: float, *, tracking: bool = False,
                   timeout_s: float | None = None) -> None:
        """Convert to JNow for now and slew there; then set tracking. Raises SettingRejected
        (out of range, parked), DeviceUnavailable."""
        if not (math.isfinite(alt_deg) and math.isfinite(az_deg) and 0.0 <= alt_deg <= 90.0
                and 0.0 <= az_deg < 360.0):
            raise SettingRejected(f"alt {alt_deg:g}° / az {az_deg:g}° out of range "
                                  "(alt 0..90, az 0..360)", device=self.device)
        self._require()
        self._refuse_parked()
        ra, dec = altaz_to_radec(self.place, self.clock.now(), alt_deg, az_deg)
        self.slew_radec(ra, dec, tracking=tracking, timeout_s=timeout_s)

    def slew_radec(self, ra_hours: float, dec_deg: float, *, tracking: bool = True,
                   timeout_s: float | None = None) -> None:
        """ON_COORD_SET=TRACK, EQUATORIAL_EOD_COORD=(RA, Dec), wait until it leaves Busy at the
        target, then TELESCOPE_TRACK_STATE as asked. Raises SettingRejected (out of range,
        parked, also when the device refuses because another client parked it meanwhile),
        DeviceUnavailable (refused, aborted, past the deadline: then aborted)."""
        if not (math.isfinite(ra_hours) and math.isfinite(dec_deg) and 0.0 <= ra_hours < 24.0
                and -90.0 <= dec_deg <= 90.0):
            raise SettingRejected(f"RA {ra_hours:g} h / Dec {dec_deg:g}° out of range",
                                  device=self.device)
        self._require()
        self._refuse_parked()
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        self._aborted.clear()
        coord_set = self._prop("ON_COORD_SET")
        if coord_set is not None and not coord_set.is_on("TRACK"):
            self._set_switch("ON_COORD_SET", "TRACK")
        before = self._require().version()
        try:
            self._set_number("EQUATORIAL_EOD_COORD", {"RA": ra_hours, "DEC": dec_deg},
                             accept_busy=True, timeout_s=timeout)
        except SettingRejected as err:
            raise self._refused("slew", str(err)) from err
        # Done when the coordinates are at the target and not Busy: a periodic Idle report
        # sent before the goto started must not end the wait (nor a refusal's Idle, which the
        # wait tells apart by the device's message and the Busy that did not follow).
        self._wait_done("EQUATORIAL_EOD_COORD", before, timeout, "slew",
                        arrived=lambda snap: _at(snap, ra_hours, dec_deg))
        if self._aborted.is_set():
            raise DeviceUnavailable("slew aborted", device=self.device)
        self.set_tracking(tracking)

    def set_tracking(self, on: bool) -> None:
        """TELESCOPE_TRACK_STATE=TRACK_ON/TRACK_OFF, and check that the switch reads so. Blocks
        up to ``set_timeout_s`` plus REFUSAL_GRACE_S real seconds. Raises SettingRejected
        (parked, also when the device refuses because another client parked it meanwhile;
        Alert), DeviceUnavailable (refused otherwise)."""
        self._require()
        self._refuse_parked()
        name = "TELESCOPE_TRACK_STATE"
        track = self._prop(name)
        element = "TRACK_ON" if on else "TRACK_OFF"
        if track is not None and track.is_on(element) and track.state != "Alert":
            return
        conn = self._require()
        before = conn.version()
        # Busy is INDI's "tracking": the device may answer TRACK_ON with it.
        if self._set_switch(name, element, accept_busy=True).is_on(element):
            return
        # The telescope simulator refuses TRACK_ON while parked with a warning, then the switch
        # Idle with TRACK_OFF on. The first report since the request may also be an earlier one
        # (a park turning tracking off): the device's own answer gets a grace to follow.
        def as_asked(st: ConnState) -> PropSnapshot | None:
            snap = st.prop(self.device, name)
            ok = snap is not None and snap.version > before and (
                snap.is_on(element) or snap.alerted_since(before))
            return snap if ok else None

        session = conn.read(lambda st: st.session(self.device))
        snap = conn.wait_until(as_asked, REFUSAL_GRACE_S, device=self.device, session=session)
        if snap is not None:
            reason = self._alert_reason(snap, before)
            if reason is not None:
                raise SettingRejected(f"{name} refused: {reason}", device=self.device)
            return
        latest = self._prop(name)
        state = f"state {latest.state}" if latest is not None else "no answer"
        raise self._refused("tracking", self._message_since(before) or
                            f"{name} does not read {element} ({state})")

    def abort(self) -> None:
        """TELESCOPE_ABORT_MOTION; wakes a waiting move. Never raises."""
        self._aborted.set()
        self._send_abort("TELESCOPE_ABORT_MOTION")

    # ------------------------------------------------------------------ internals

    def _prop_state(self, name: str) -> str | None:
        snap = self._prop(name)
        return snap.state if snap is not None else None

    def _refuse_parked(self) -> None:
        if self._parked():
            raise SettingRejected("the mount is parked: unpark it first", device=self.device)

    def _refused(self, what: str, detail: str) -> DeviceError:
        """The error for a request the device refused (``detail``: why): SettingRejected when
        the mount now reads parked (another client may have parked it after
        :meth:`_refuse_parked` looked), else DeviceUnavailable."""
        if self._parked():
            return SettingRejected(f"the mount is parked: {detail}", device=self.device)
        return DeviceUnavailable(f"{what} refused: {detail}", device=self.device)

    def _wait_done(self, name: str, before: int, timeout_s: float, what: str,
                   element: str | None = None,
                   arrived: Callable[[PropSnapshot], bool] | None = None) -> PropSnapshot:
        """Wait until property ``name`` is no longer Busy (with ``element`` on and
        ``arrived``, when given), or has been Alert since connection version ``before`` (the
        request), or refused without an Alert (see :func:`_idle_refusal`; for REFUSAL_GRACE_S,
        or two of the device's POLLING_PERIODs if longer, without a Busy: then the motion is
        aborted in case it started after all), or an abort. An Alert counts even when the
        device restored another state in the next report (the telescope simulator answers a
        park interrupted by UNPARK with Alert, then Ok with PARK on). Past the deadline the
        motion is aborted. Raises DeviceUnavailable, or SettingRejected for a refusal while the
        mount reads parked."""
        conn = self._require()
        session = conn.read(lambda st: st.session(self.device))
        refused: str | None = None
        refused_since: float | None = None
        # A driver that reports Busy only at its next status poll gets two of them.
        polling = self._prop("POLLING_PERIOD")
        period_s = (polling.number("PERIOD_MS") / 1000.0
                    if polling is not None and "PERIOD_MS" in polling.values else 0.0)
        grace = min(MAX_REFUSAL_GRACE_S, max(REFUSAL_GRACE_S, 2 * period_s))

        def done(st: ConnState) -> PropSnapshot | bool | None:
            nonlocal refused, refused_since
            refused = None
            if self._aborted.is_set():
                return False
            snap = st.answer(self.device, name, before)
            if snap is None or snap.alerted_since(before):
                return snap
            if ((element is None or snap.is_on(element))
                    and (arrived is None or arrived(snap))):
                return snap
            refused = _idle_refusal(st, self.device, snap, before)
            if refused is None:
                refused_since = None
                return None
            refused_since = refused_since or time.monotonic()
            return snap if time.monotonic() - refused_since >= grace else None

        result = conn.wait_until(done, timeout_s, device=self.device, session=session)
        if result is False:
            # the abort is sent after the wait is woken: give the device a moment to stop
            conn.wait_until(lambda st: _not_busy(st.prop(self.device, name)), ABORT_SETTLE_S,
                            device=self.device, session=session)
            raise DeviceUnavailable(f"{what} aborted", device=self.device)
        if not isinstance(result, PropSnapshot):
            self.abort()
            raise DeviceUnavailable(f"{what} not done within {timeout_s:g} s", device=self.device)
        reason = self._alert_reason(result, before)
        if reason is not None:
            raise DeviceUnavailable(f"{what} failed: {reason}", device=self.device)
        if refused is not None:
            # Should the device be moving after all, it stops rather than go on unwatched.
            self._send_abort("TELESCOPE_ABORT_MOTION")
            raise self._refused(what, refused)
        return result
