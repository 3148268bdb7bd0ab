"""INDI filter wheel (``FILTER_SLOT`` / ``FILTER_NAME``)."""

from __future__ import annotations

import logging
import re

from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import SettingRejected
from calibd.drivers.indi._device import IndiDevice
from calibd.drivers.indi._state import ConnState
from calibd.drivers.indi._state import PropSnapshot

log = logging.getLogger(__name__)

DEFAULT_MOVE_TIMEOUT_S = 60.0


def _slot_key(element: str) -> int:
    match = re.search(r"(\d+)$", element)
    return int(match.group(1)) if match else 0


class IndiFilterWheel(IndiDevice):
    """A filter wheel satisfying :class:`drivers.contracts.FilterWheel`.

    ``IndiFilterWheel(host=..., port=..., device="Filter Simulator", socket_path=None)``. Slot
    names come from FILTER_NAME (slot order); positions are FILTER_SLOT (1-based).
    """

    _required = ("FILTER_SLOT", "FILTER_NAME")

    @property
    def names(self) -> tuple[str, ...]:
        """Slot names in slot order, as the device reports them now. Raises DeviceUnavailable
        before connect()."""
        snap = self._prop("FILTER_NAME")
        if snap is None:
            raise DeviceUnavailable("not connected", device=self.device)
        slots = self._prop("FILTER_SLOT")
        count = int(slots.limits["FILTER_SLOT_VALUE"][1]) if slots else len(snap.values)
        ordered = sorted(snap.values.items(), key=lambda kv: _slot_key(kv[0]))
        names = tuple(str(value) for _, value in ordered)
        return names[:count] if count > 0 else names

    def connect(self) -> None:
        """Connect server and device (idempotent). Blocks up to ``connect_timeout_s`` per
        step. Raises DeviceUnavailable."""
        if not self.connected:
            self._connect_device()

    def position(self) -> str | None:
        """The filter in the beam, None while the wheel moves or reports an unknown slot.
        Raises DeviceUnavailable."""
        self._require()
        snap = self._prop("FILTER_SLOT")
        if snap is None or snap.state == "Busy":
            return None
        index = round(snap.number("FILTER_SLOT_VALUE")) - 1
        names = self.names
        return names[index] if 0 <= index < len(names) else None

    def select(self, name: str, *, timeout_s: float | None = None) -> None:
        """Move to ``name`` and block until the device reports the slot reached (state Ok), at
        most ``timeout_s`` real seconds (default 60). Raises SettingRejected (unknown name),
        DeviceUnavailable (device Alert, no arrival by the deadline, connection lost)."""
        conn = self._require()
        names = self.names
        if name not in names:
            raise SettingRejected(
                f"no filter named {name!r} (available: {', '.join(names)})", device=self.device
            )
        slot = names.index(name) + 1
        current = self._prop("FILTER_SLOT")
        if current and current.state == "Ok" and round(current.number("FILTER_SLOT_VALUE")) == slot:
            return
        timeout = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        session = self._session
        before = conn.version()
        conn.send_number(self.device, "FILTER_SLOT", {"FILTER_SLOT_VALUE": float(slot)})

        def arrived(st: ConnState) -> PropSnapshot | None:
            snap = st.prop(self.device, "FILTER_SLOT")
            if snap is None or snap.version <= before or snap.state == "Busy":
                return None
            if snap.alerted_since(before) or round(snap.number("FILTER_SLOT_VALUE")) == slot:
                return snap
            return None

        snap = conn.wait_until(arrived, timeout, device=self.device, session=session)
        if snap is None:
            raise DeviceUnavailable(
                f"filter {name!r} (slot {slot}) not reached within {timeout:g} s",
                device=self.device,
            )
        reason = self._alert_reason(snap, before)
        if reason is not None:
            raise DeviceUnavailable(f"move to {name!r} failed: {reason}", device=self.device)
        log.debug("%s: filter %s in place", self.device, name)
