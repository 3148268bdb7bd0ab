"""INDI light box (``FLAT_LIGHT_*``) with an optional dust cap (``CAP_PARK``)."""

from __future__ import annotations

import logging
from typing import Unpack

from calibd.drivers.contracts import CoverState
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi._device import Endpoint
from calibd.drivers.indi._device import IndiDevice

log = logging.getLogger(__name__)

DEFAULT_COVER_TIMEOUT_S = 60.0


class IndiFlatPanel(IndiDevice):
    """A flat panel satisfying :class:`drivers.contracts.FlatPanel`.

    ``IndiFlatPanel(host=..., port=..., device="Light Panel Simulator", dust_cap_device=None)``.
    The light is FLAT_LIGHT_CONTROL (on/off) and FLAT_LIGHT_INTENSITY (0..max); the cover is the
    dust cap's CAP_PARK (PARK = closed, UNPARK = open) on ``dust_cap_device``, which may be the
    same device (e.g. a Flip-Flat) or another one; None means no cover.
    """

    _required = ("FLAT_LIGHT_CONTROL", "FLAT_LIGHT_INTENSITY")

    def __init__(
        self,
        *,
        dust_cap_device: str | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self.dust_cap_device = dust_cap_device

    @property
    def max_brightness(self) -> int:
        """Largest FLAT_LIGHT_INTENSITY the device accepts. Raises DeviceUnavailable before
        connect()."""
        snap = self._prop("FLAT_LIGHT_INTENSITY")
        if snap is None:
            raise DeviceUnavailable("not connected", device=self.device)
        return int(snap.limits["FLAT_LIGHT_INTENSITY_VALUE"][1])

    @property
    def has_cover(self) -> bool:
        return self.dust_cap_device is not None

    def connect(self) -> None:
        """Connect server, light box and dust cap (idempotent). Raises DeviceUnavailable."""
        if self.connected and (not self.has_cover or self._cap_ok()):
            return
        extra = [self.dust_cap_device] if self.dust_cap_device not in (None, self.device) else []
        self._connect_device(extra_devices=[d for d in extra if d])
        if self.dust_cap_device is not None:
            conn = self._require()
            missing = self._wait_props(conn, self.dust_cap_device, ("CAP_PARK",))
            if missing:
                raise DeviceUnavailable("dust cap defines no CAP_PARK", device=self.dust_cap_device)

    def _cap_ok(self) -> bool:
        return (
            self.dust_cap_device is not None
            and self._prop("CAP_PARK", self.dust_cap_device) is not None
        )

    def light(self, brightness: int, *, timeout_s: float | None = None) -> None:
        """Switch the light on at ``brightness`` (0 = off) and block until the device confirms
        both (``timeout_s`` real seconds per step). Raises SettingRejected (out of range or
        refused), DeviceUnavailable."""
        self._require()
        top = self.max_brightness
        if not 0 <= brightness <= top:
            raise SettingRejected(
                f"brightness {brightness} is outside [0, {top}]", device=self.device
            )
        if brightness == 0:
            self.off(timeout_s=timeout_s)
            return
        control = self._prop("FLAT_LIGHT_CONTROL")
        if control is None or not control.is_on("FLAT_LIGHT_ON"):
            self._set_switch("FLAT_LIGHT_CONTROL", "FLAT_LIGHT_ON", timeout_s=timeout_s)
        self._set_number(
            "FLAT_LIGHT_INTENSITY", {"FLAT_LIGHT_INTENSITY_VALUE": brightness}, timeout_s=timeout_s
        )

    def off(self, *, timeout_s: float | None = None) -> None:
        """Switch the light off and block until the device confirms. Raises
        DeviceUnavailable."""
        self._require()
        control = self._prop("FLAT_LIGHT_CONTROL")
        if control is not None and control.is_on("FLAT_LIGHT_OFF") and control.state != "Alert":
            return
        try:
            self._set_switch("FLAT_LIGHT_CONTROL", "FLAT_LIGHT_OFF", timeout_s=timeout_s)
        except SettingRejected as err:
            raise DeviceUnavailable(f"light did not switch off: {err}", device=self.device) from err

    def brightness(self) -> int:
        """Current brightness as reported: 0 when the light is off. Raises
        DeviceUnavailable."""
        self._require()
        control = self._prop("FLAT_LIGHT_CONTROL")
        level = self._prop("FLAT_LIGHT_INTENSITY")
        if control is None or level is None or not control.is_on("FLAT_LIGHT_ON"):
            return 0
        return round(level.number("FLAT_LIGHT_INTENSITY_VALUE"))

    def cover_state(self) -> CoverState:
        """The dust cap as reported (NOT_PRESENT without one)."""
        if self.dust_cap_device is None:
            return CoverState.NOT_PRESENT
        snap = self._prop("CAP_PARK", self.dust_cap_device)
        if snap is None:
            return CoverState.UNKNOWN
        if snap.state == "Busy":
            return CoverState.MOVING
        if snap.state == "Alert":
            return CoverState.ERROR
        if snap.is_on("PARK"):
            return CoverState.CLOSED
        if snap.is_on("UNPARK"):
            return CoverState.OPEN
        return CoverState.UNKNOWN

    def open_cover(self, *, timeout_s: float | None = None) -> None:
        """Unpark the dust cap and block until open. Raises NotSupported, DeviceUnavailable."""
        self._move_cover("UNPARK", timeout_s)

    def close_cover(self, *, timeout_s: float | None = None) -> None:
        """Park the dust cap and block until closed. Raises NotSupported, DeviceUnavailable."""
        self._move_cover("PARK", timeout_s)

    def _move_cover(self, element: str, timeout_s: float | None) -> None:
        if self.dust_cap_device is None:
            raise NotSupported("this flat panel has no dust cap configured", device=self.device)
        self._require()
        timeout = DEFAULT_COVER_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            snap = self._set_switch(
                "CAP_PARK", element, device=self.dust_cap_device, timeout_s=timeout
            )
        except SettingRejected as err:
            raise DeviceUnavailable(str(err), device=self.dust_cap_device) from err
        if not snap.is_on(element):
            raise DeviceUnavailable(
                f"dust cap did not {element.lower()}", device=self.dust_cap_device
            )
