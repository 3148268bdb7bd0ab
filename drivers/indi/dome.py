"""INDI dome (``DOME_SHUTTER``, ``DOME_PARK``, ``DOME_AUTOSYNC``) or roll-off roof.

A dome's shutter state lives in the property *state*: after SHUTTER_OPEN the switch reads On at
once with state Busy (opening) and turns Ok when open; Alert is an error. A roll-off roof
(``indi_rolloff_dome`` and friends) has no DOME_SHUTTER: its roof is DOME_PARK (PARK = closed,
UNPARK = open): the switch turns at once and the roof moves while DOME_MOTION has CW (opening)
or CCW (closing) on or is Busy; it has no azimuth, so it is always "at park" in the contract's
sense.

A roof's DOME_PARK is only its belief. Without saved park data (a fresh configuration) the INDI
roof driver reports neither PARK nor UNPARK at first, then UNPARK, with both limit switches off:
the roof may be anywhere, and UNPARK is answered "already unparked" without a move. So until
this connection has seen the roof reach a position, opening or closing it drives DOME_MOTION
(CW opens, CCW closes) to the limit switch; the driver refuses that move with "already fully
opened/closed" when the switch is already on, which confirms the position as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Unpack

from calibd.drivers.contracts import ShutterState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi._conn import IndiConnection
from calibd.drivers.indi._conn import PropSnapshot
from calibd.drivers.indi._device import Endpoint
from calibd.drivers.indi._device import IndiDevice
from calibd.drivers.indi._state import ConnState

log = logging.getLogger(__name__)

DEFAULT_MOVE_TIMEOUT_S = 180.0  # real seconds for a shutter or park move


class IndiDome(IndiDevice):
    """A dome or roll-off roof satisfying :class:`drivers.contracts.Dome`.

    ``IndiDome(host=..., port=..., device="Dome Simulator")``; a device without DOME_SHUTTER is
    taken as a roll-off roof. Timeouts are real seconds.
    """

    _required = ("DOME_PARK",)

    def __init__(self, **endpoint: Unpack[Endpoint]) -> None:
        super().__init__(**endpoint)
        self._roof_seen = False  # the roof was seen at a limit switch since connecting

    @property
    def is_roof(self) -> bool:
        """True for a roll-off roof (no DOME_SHUTTER). Valid after connect."""
        return self._prop("DOME_SHUTTER") is None

    def connect(self) -> None:
        """Connect server and device (idempotent). Raises DeviceUnavailable."""
        if self.connected:
            return
        self._roof_seen = False
        self._connect_device()

    # ------------------------------------------------------------------ shutter / roof

    def _shutter_prop(self) -> tuple[str, str, str]:
        """(property, open element, close element) of the shutter or roof."""
        if self.is_roof:
            return "DOME_PARK", "UNPARK", "PARK"
        return "DOME_SHUTTER", "SHUTTER_OPEN", "SHUTTER_CLOSE"

    def shutter(self) -> ShutterState:
        """From the last report (no I/O). Raises DeviceUnavailable."""
        self._require()
        name, opened, _ = self._shutter_prop()
        snap = self._prop(name)
        if snap is None:
            raise DeviceUnavailable(f"no {name}", device=self.device)
        if self.is_roof:
            return _roof_state(snap, self._prop("DOME_MOTION"))
        return _shutter_state(snap, opened)

    def open_shutter(self, *, timeout_s: float | None = None) -> None:
        """Open and block until Ok with the open switch on. Raises DeviceUnavailable (Alert,
        refused, past the deadline: then the motion is aborted)."""
        _, opened, _ = self._shutter_prop()
        self._move_shutter(opened, ShutterState.OPEN, timeout_s)

    def close_shutter(self, *, timeout_s: float | None = None) -> None:
        """Close and block until Ok with the close switch on. Raises DeviceUnavailable."""
        _, _, closed = self._shutter_prop()
        self._move_shutter(closed, ShutterState.CLOSED, timeout_s)

    def _move_shutter(self, element: str, target: ShutterState, timeout_s: float | None) -> None:
        self._require()
        roof = self.is_roof
        current = self.shutter()
        if current is target and (self._roof_seen or not roof):
            return
        name = self._shutter_prop()[0]
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        what = f"{target.name.lower()} the shutter"
        opposite = ShutterState.CLOSED if target is ShutterState.OPEN else ShutterState.OPEN
        if roof and current is not opposite and self._prop("DOME_MOTION") is not None:
            # reported there but not seen there, or unknown: DOME_PARK would not move it
            self._drive_roof(target, timeout, what)
        else:
            self._switch_and_wait(name, element, timeout, what)
        self._roof_seen = roof
        state = self.shutter()
        if state is not target:
            raise DeviceUnavailable(f"shutter is {state.name.lower()}, not {target.name.lower()}",
                                    device=self.device)

    # ------------------------------------------------------------------ park / slaving

    def at_park(self) -> bool:
        """True when parked (a roof: always). Raises DeviceUnavailable."""
        self._require()
        if self.is_roof:
            return True
        snap = self._prop("DOME_PARK")
        return snap is not None and snap.is_on("PARK") and snap.state == "Ok"

    def park(self, *, timeout_s: float | None = None) -> None:
        """DOME_PARK=PARK and wait (a roof: a no-op, its DOME_PARK is the roof). Raises
        DeviceUnavailable."""
        self._require()
        if self.is_roof or self.at_park():
            return
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        self._switch_and_wait("DOME_PARK", "PARK", timeout, "park")

    def unpark(self, *, timeout_s: float | None = None) -> None:
        """DOME_PARK=UNPARK and wait (a roof: a no-op). Raises DeviceUnavailable."""
        self._require()
        snap = self._prop("DOME_PARK")
        if self.is_roof or (snap is not None and snap.is_on("UNPARK") and snap.state != "Alert"):
            return
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        self._switch_and_wait("DOME_PARK", "UNPARK", timeout, "unpark")

    def stop_slaving(self) -> None:
        """DOME_AUTOSYNC=DISABLE where the device has it. Raises DeviceUnavailable."""
        self._require()
        sync = self._prop("DOME_AUTOSYNC")
        if sync is None or sync.is_on("DOME_AUTOSYNC_DISABLE"):
            return
        try:
            self._set_switch("DOME_AUTOSYNC", "DOME_AUTOSYNC_DISABLE")
        except SettingRejected as err:
            raise DeviceUnavailable(str(err), device=self.device) from err

    # ------------------------------------------------------------------ internals

    def _switch_and_wait(self, name: str, element: str, timeout_s: float, what: str) -> None:
        conn = self._require()
        before = conn.version()
        roof = self.is_roof and self._prop("DOME_MOTION") is not None
        try:
            self._set_switch(name, element, accept_busy=True, timeout_s=timeout_s)
        except SettingRejected as err:
            raise DeviceUnavailable(f"{what}: {err}", device=self.device) from err

        # An Alert since the request ends the wait even when the device has moved on since
        # (an Alert and the next report can arrive together).
        def done(st: ConnState) -> PropSnapshot | None:
            snap = st.answer(self.device, name, before)
            if snap is None or snap.alerted_since(before):
                return snap
            if roof:  # a roof's motion is in DOME_MOTION
                motion = st.prop(self.device, "DOME_MOTION")
                if motion is None or motion.version <= before or _roof_moving(motion):
                    return None
            return snap

        snap = self._wait_motion(conn, done, timeout_s, what)
        reason = self._alert_reason(snap, before, fallback=f"state {snap.state}")
        if reason is not None or not snap.is_on(element):
            detail = reason or self._message_since(before) or f"state {snap.state}"
            raise DeviceUnavailable(f"{what} failed: {detail}", device=self.device)

    def _drive_roof(self, target: ShutterState, timeout_s: float, what: str) -> None:
        """Move the roof to its limit switch through DOME_MOTION (CW opens, CCW closes) and
        wait until the motion ends. A refusal saying it is already there counts as there.
        Raises DeviceUnavailable."""
        conn = self._require()
        element = "DOME_CW" if target is ShutterState.OPEN else "DOME_CCW"
        at_target = "UNPARK" if target is ShutterState.OPEN else "PARK"
        before = conn.version()
        try:
            self._set_switch("DOME_MOTION", element, accept_busy=True, timeout_s=timeout_s)
        except SettingRejected as err:
            said = self._message_since(before) or ""
            if "already" in said.lower():
                return  # the limit switch is on: the roof is there
            raise DeviceUnavailable(f"{what}: {err}", device=self.device) from err

        def done(st: ConnState) -> PropSnapshot | None:
            motion, park = st.prop(self.device, "DOME_MOTION"), st.prop(self.device, "DOME_PARK")
            if motion is None or park is None:
                return None
            if motion.alerted_since(before) or park.alerted_since(before):
                return park
            # the motion ends first, DOME_PARK follows with the position reached
            if _roof_moving(motion) or park.state == "Busy" or not park.is_on(at_target):
                return None
            return park

        snap = self._wait_motion(conn, done, timeout_s, what)
        latest = max((s for s in (snap, self._prop("DOME_MOTION")) if s is not None),
                     key=lambda s: s.alerted)  # the later Alert of the park and the motion
        reason = self._alert_reason(latest, before)
        if reason is not None:
            raise DeviceUnavailable(f"{what} failed: {reason}", device=self.device)

    def _wait_motion(self, conn: IndiConnection,
                     done: Callable[[ConnState], PropSnapshot | None], timeout_s: float,
                     what: str) -> PropSnapshot:
        """Block until ``done`` returns a snapshot (on this device's current session). Past
        ``timeout_s`` real seconds the motion is aborted and DeviceUnavailable raised ("``what``:
        not done within ..."), as it is when the session ends."""
        session = conn.read(lambda st: st.session(self.device))
        snap = conn.wait_until(done, timeout_s, device=self.device, session=session)
        if snap is None:
            self._abort_motion()
            raise DeviceUnavailable(f"{what}: not done within {timeout_s:g} s",
                                    device=self.device)
        return snap

    def _abort_motion(self) -> None:
        if self._prop("DOME_ABORT_MOTION") is not None:
            self._send_abort("DOME_ABORT_MOTION")


def _roof_moving(motion: PropSnapshot | None) -> bool:
    if motion is None:
        return False
    return motion.state == "Busy" or motion.is_on("DOME_CW") or motion.is_on("DOME_CCW")


def _shutter_state(snap: PropSnapshot, opened: str) -> ShutterState:
    is_open = snap.is_on(opened)
    if snap.state == "Alert" or not any(bool(v) for v in snap.values.values()):
        return ShutterState.ERROR
    if snap.state == "Busy":
        return ShutterState.OPENING if is_open else ShutterState.CLOSING
    return ShutterState.OPEN if is_open else ShutterState.CLOSED


def _roof_state(park: PropSnapshot, motion: PropSnapshot | None) -> ShutterState:
    """A roof's state: DOME_PARK says where it is (or is going), DOME_MOTION's direction
    whether it is on its way (the two are reported one after the other, so while the roof
    moves the direction is the motion's)."""
    if motion is not None and _roof_moving(motion):
        if motion.is_on("DOME_CW"):
            return ShutterState.OPENING
        if motion.is_on("DOME_CCW"):
            return ShutterState.CLOSING
    return _shutter_state(park, "UNPARK")
