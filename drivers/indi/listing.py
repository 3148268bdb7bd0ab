"""``calibd devices list --driver indi``: what an indiserver offers, by driver interface."""

from __future__ import annotations

import time

from calibd.drivers.contracts import DeviceListing
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.indi._conn import IndiConnection
from calibd.drivers.indi._conn import ServerAddress
from calibd.drivers.indi._state import ConnState

# INDI::BaseDevice::DRIVER_INTERFACE bits (libindi basedevice.h)
INTERFACE_BITS = {
    "TELESCOPE": 1 << 0,
    "CCD": 1 << 1,
    "GUIDER": 1 << 2,
    "FOCUSER": 1 << 3,
    "FILTER": 1 << 4,
    "DOME": 1 << 5,
    "GPS": 1 << 6,
    "WEATHER": 1 << 7,
    "AO": 1 << 8,
    "DUSTCAP": 1 << 9,
    "LIGHTBOX": 1 << 10,
    "DETECTOR": 1 << 11,
    "ROTATOR": 1 << 12,
    "SPECTROGRAPH": 1 << 13,
    "CORRELATOR": 1 << 14,
    "AUX": 1 << 15,
}
_KINDS = (
    ("CCD", "camera"),
    ("FILTER", "filterwheel"),
    ("LIGHTBOX", "flatpanel"),
    ("DUSTCAP", "flatpanel"),
    ("WEATHER", "weather"),
    ("TELESCOPE", "mount"),
    ("DOME", "dome"),
)


def interface_names(bits: int) -> list[str]:
    """Names of the interface bits set in ``bits``, e.g. ``["CCD", "GUIDER"]``."""
    return [name for name, bit in INTERFACE_BITS.items() if bits & bit]


def list_devices(
    host: str = "localhost",
    port: int = 7624,
    socket_path: str | None = None,
    timeout_s: float = 5.0,
) -> list[DeviceListing]:
    """Connect briefly (a private connection, devices are not connected) and list every device
    the server offers: one entry per calibd role its DRIVER_INTERFACE bits give it (camera,
    filterwheel, flatpanel for a light box or dust cap, weather, mount, dome), "other" when
    none. Blocks until every device has reported its driver info and no new device arrived
    for 0.3 s, at most ``timeout_s`` real seconds. Raises DeviceUnavailable (server unreachable)."""
    conn = IndiConnection(ServerAddress(host=host, port=port, socket_path=socket_path))
    try:
        conn.ensure_server(timeout_s)
        deadline = time.monotonic() + timeout_s
        last: tuple[int, int] | None = None
        stable_since = time.monotonic()
        while time.monotonic() < deadline:

            def snapshot(st: ConnState) -> tuple[int, int]:
                known = sum(1 for e in st.devices.values() if e.interface is not None)
                return len(st.devices), known

            now = conn.read(snapshot)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif now[0] > 0 and now[0] == now[1] and time.monotonic() - stable_since >= 0.3:
                break
            time.sleep(0.05)
        if not conn.read(lambda st: st.server_up):
            raise DeviceUnavailable(f"{conn.address} closed the connection")
        return conn.read(_listings)
    finally:
        conn.close()


def _listings(st: ConnState) -> list[DeviceListing]:
    out: list[DeviceListing] = []
    for name in sorted(st.devices):
        bits = st.devices[name].interface or 0
        info = st.prop(name, "DRIVER_INFO")
        exe = str(info.values.get("DRIVER_EXEC", "")) if info else ""
        version = str(info.values.get("DRIVER_VERSION", "")) if info else ""
        details = ", ".join(interface_names(bits)) or "no interface"
        if exe:
            details = f"{exe} {version}".strip() + f"; {details}"
        kinds = list(dict.fromkeys(kind for iface, kind in _KINDS if bits & INTERFACE_BITS[iface]))
        for kind in kinds or ["other"]:
            out.append(DeviceListing(kind=kind, name=name, details=details))
    return out
