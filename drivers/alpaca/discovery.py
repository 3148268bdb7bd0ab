"""Finding Alpaca servers and their devices.

:func:`discover` sends the Alpaca discovery datagram (``alpacadiscovery1``, UDP 32227) **only** to
the addresses or the interface the caller names — never to every interface, unlike alpyca's
``discovery.search_ipv4`` — collects ``{"AlpacaPort": n}`` replies, then asks each server's
management API (``/management/apiversions``, ``/management/v1/description``,
``/management/v1/configureddevices``) what it offers.

:func:`list_devices` lists one server's devices. Servers without a management API (e.g.
alpaca-simulators) are probed instead: ``GET /api/v1/{type}/{n}/name`` for the usual device types,
numbers counting up from 0 until the first miss.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import re
import selectors
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from calibd.drivers.alpaca._base import http_get_json
from calibd.drivers.contracts import DeviceListing
from calibd.drivers.errors import DeviceUnavailable

logger = logging.getLogger(__name__)

DISCOVERY_PORT = 32227
DISCOVERY_MESSAGE = b"alpacadiscovery1"

#: Alpaca DeviceType (lower case) -> DeviceListing.kind
KIND_BY_TYPE = {
    "camera": "camera",
    "filterwheel": "filterwheel",
    "covercalibrator": "flatpanel",
    "safetymonitor": "safety",
    "observingconditions": "weather",
    "telescope": "mount",
    "dome": "dome",
}
#: Device types probed on servers without a management API, and how many numbers at most.
PROBE_TYPES = (
    "camera",
    "filterwheel",
    "covercalibrator",
    "safetymonitor",
    "observingconditions",
    "focuser",
    "rotator",
    "switch",
    "telescope",
    "dome",
)
PROBE_MAX_NUMBER = 8

_NAME = re.compile(
    r"^alpaca://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/(?P<type>[a-z]+)/(?P<n>\d+)$"
)


@dataclass(frozen=True)
class AlpacaServer:
    """One Alpaca server: where it is, what its management API says, and its devices."""

    host: str
    port: int
    server_name: str = ""
    manufacturer: str = ""
    manufacturer_version: str = ""
    location: str = ""
    api_versions: tuple[int, ...] = ()
    has_management_api: bool = False
    devices: tuple[DeviceListing, ...] = ()
    error: str = ""  # why the server could not be described (devices then empty)


def device_name(host: str, port: int, device_type: str, number: int) -> str:
    """The configuration name of a device: ``alpaca://host:port/type/number``."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"alpaca://{shown}:{port}/{device_type.lower()}/{number}"


def parse_device_name(name: str) -> tuple[str, int, str, int]:
    """Inverse of :func:`device_name`: (host, port, device type, device number).

    Raises ValueError for anything else.
    """
    match = _NAME.match(name.strip())
    if match is None:
        raise ValueError(f"not an Alpaca device name (alpaca://host:port/type/n): {name!r}")
    host = match["host"].strip("[]")
    return host, int(match["port"]), match["type"], int(match["n"])


def _management(host: str, port: int, path: str, timeout_s: float) -> Any:
    """Value of one management API call. Raises OSError (unreachable) or ValueError (no
    management API, error answer, malformed)."""
    try:
        doc = http_get_json(host, port, path, timeout_s=timeout_s)
    except http.client.HTTPException as err:
        raise ValueError(f"GET {path}: {err!r}") from err
    if not isinstance(doc, dict) or "Value" not in doc:
        raise ValueError(f"GET {path}: not an Alpaca answer")
    if int(doc.get("ErrorNumber") or 0):
        raise ValueError(f"GET {path}: {doc.get('ErrorMessage')} (0x{int(doc['ErrorNumber']):X})")
    return doc["Value"]


def configured_devices(host: str, port: int, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """``/management/v1/configureddevices``: dicts with DeviceName, DeviceType, DeviceNumber,
    UniqueID. Blocks up to ``timeout_s`` per socket operation. Raises OSError / ValueError."""
    value = _management(host, port, "/management/v1/configureddevices", timeout_s)
    if not isinstance(value, list):
        raise ValueError("configureddevices: Value is not a list")
    return [entry for entry in value if isinstance(entry, dict)]


def _listing(
    host: str, port: int, device_type: str, number: int, *, name: str, uid: str
) -> DeviceListing:
    details = f"{name} ({device_type} #{number}" + (f", UniqueID {uid})" if uid else ")")
    return DeviceListing(
        kind=KIND_BY_TYPE.get(device_type.lower(), "other"),
        name=device_name(host, port, device_type, number),
        details=details,
    )


def _probe_devices(host: str, port: int, timeout_s: float) -> list[DeviceListing]:
    """Ask ``/api/v1/{type}/{n}/name`` for the usual types. Raises OSError if unreachable."""
    found: list[DeviceListing] = []
    for device_type in PROBE_TYPES:
        for number in range(PROBE_MAX_NUMBER):
            try:
                doc = http_get_json(
                    host,
                    port,
                    f"/api/v1/{device_type}/{number}/name",
                    timeout_s=timeout_s,
                    params={"ClientTransactionID": "0"},
                )
            except (ValueError, http.client.HTTPException):
                break
            if not isinstance(doc, dict) or int(doc.get("ErrorNumber") or 0) or "Value" not in doc:
                break
            found.append(_listing(host, port, device_type, number, name=str(doc["Value"]), uid=""))
    return found


def list_devices(
    host: str, port: int, *, timeout_s: float = 5.0, probe: bool = True
) -> list[DeviceListing]:
    """The devices of the Alpaca server at ``host:port`` (management API, else probing when
    ``probe``). Only talks to that server. Blocks up to ``timeout_s`` per request.

    Raises DeviceUnavailable when the server cannot be reached (or has no management API and
    ``probe`` is False).
    """
    return list(describe_server(host, port, timeout_s=timeout_s, probe=probe, strict=True).devices)


def describe_server(
    host: str, port: int, *, timeout_s: float = 5.0, probe: bool = True, strict: bool = False
) -> AlpacaServer:
    """Management description and devices of one server. With ``strict`` a failure raises
    DeviceUnavailable; otherwise it is returned in ``AlpacaServer.error``."""
    try:
        versions = _management(host, port, "/management/apiversions", timeout_s)
        description = _management(host, port, "/management/v1/description", timeout_s)
        entries = configured_devices(host, port, timeout_s=timeout_s)
    except OSError as err:
        if strict:
            raise DeviceUnavailable(f"Alpaca server {host}:{port} unreachable: {err}") from err
        return AlpacaServer(host=host, port=port, error=f"unreachable: {err}")
    except ValueError as err:
        logger.info("%s:%d has no usable management API (%s)", host, port, err)
        if not probe:
            if strict:
                raise DeviceUnavailable(f"{host}:{port}: no management API: {err}") from err
            return AlpacaServer(host=host, port=port, error=f"no management API: {err}")
        try:
            devices = _probe_devices(host, port, timeout_s)
        except OSError as probe_err:
            if strict:
                raise DeviceUnavailable(
                    f"Alpaca server {host}:{port} unreachable: {probe_err}"
                ) from probe_err
            return AlpacaServer(host=host, port=port, error=f"unreachable: {probe_err}")
        return AlpacaServer(host=host, port=port, devices=tuple(devices))
    desc = description if isinstance(description, dict) else {}
    listings = []
    for entry in entries:
        try:
            listings.append(
                _listing(
                    host,
                    port,
                    str(entry.get("DeviceType", "")),
                    int(entry.get("DeviceNumber", 0)),
                    name=str(entry.get("DeviceName", "")),
                    uid=str(entry.get("UniqueID", "")),
                )
            )
        except (TypeError, ValueError):
            logger.warning("%s:%d: skipping malformed device entry %r", host, port, entry)
    return AlpacaServer(
        host=host,
        port=port,
        server_name=str(desc.get("ServerName", "")),
        manufacturer=str(desc.get("Manufacturer", "")),
        manufacturer_version=str(desc.get("ManufacturerVersion", "")),
        location=str(desc.get("Location", "")),
        api_versions=tuple(int(v) for v in versions) if isinstance(versions, list) else (),
        has_management_api=True,
        devices=tuple(listings),
    )


def interface_ipv4(name: str) -> tuple[str, str]:
    """(address, broadcast address) of a Linux network interface; the broadcast is the address
    itself on interfaces without broadcast (loopback, point-to-point). Sends nothing.

    Raises ValueError (no such interface or no IPv4 address).
    """
    import fcntl

    siocgifflags, siocgifaddr, siocgifbrdaddr, iff_broadcast = 0x8913, 0x8915, 0x8919, 0x2
    request = struct.pack("256s", name.encode()[:15])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifaddr, request)[20:24])
            flags = struct.unpack("H", fcntl.ioctl(sock.fileno(), siocgifflags, request)[16:18])[0]
            broadcast = address
            if flags & iff_broadcast:
                raw = fcntl.ioctl(sock.fileno(), siocgifbrdaddr, request)[20:24]
                broadcast = socket.inet_ntoa(raw)
    except OSError as err:
        raise ValueError(f"interface {name!r}: no IPv4 address ({err.strerror or err})") from err
    return address, broadcast


def _targets(addresses: Iterable[str], port: int) -> list[tuple[int, tuple[Any, ...]]]:
    out: list[tuple[int, tuple[Any, ...]]] = []
    for address in addresses:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                address.strip("[]"), port, type=socket.SOCK_DGRAM
            )[0]
        except (socket.gaierror, IndexError) as err:
            raise ValueError(f"cannot resolve discovery address {address!r}: {err}") from err
        out.append((int(family), tuple(sockaddr)))
    return out


def discover(
    addresses: list[str] | None = None,
    interface: str | None = None,
    port: int = DISCOVERY_PORT,
    timeout_s: float = 2.0,
    *,
    attempts: int = 2,
    describe: bool = True,
) -> list[AlpacaServer]:
    """Find Alpaca servers by UDP discovery, sending only where told.

    ``addresses``: unicast or broadcast addresses (IPv4/IPv6 literals or host names; the first
    resolved address of each name is used). ``interface``: a Linux interface name; the datagram
    goes to its IPv4 broadcast address (its own address on loopback) from its own address.
    ``attempts`` datagrams per target, spread over ``timeout_s``; replies are collected for
    ``timeout_s`` in total, then each server is described (management API or probing, each
    request bounded by ``timeout_s``) unless ``describe`` is False.

    Blocks about ``timeout_s`` plus the descriptions. Raises ValueError when neither addresses
    nor an interface is given, or they cannot be resolved; OSError when sending fails.
    """
    if not addresses and not interface:
        raise ValueError("discovery only sends where told: give addresses or an interface")
    attempts = max(1, attempts)
    targets = _targets(addresses or [], port)
    bind_v4 = ""
    if interface:
        local, broadcast = interface_ipv4(interface)
        bind_v4 = local
        targets.append((socket.AF_INET, (broadcast, port)))
    sockets: dict[int, socket.socket] = {}
    found: dict[tuple[str, int], None] = {}
    try:
        for family, _ in targets:
            if family in sockets:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sockets[family] = sock
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.bind((bind_v4, 0))
        with selectors.DefaultSelector() as selector:
            for sock in sockets.values():
                selector.register(sock, selectors.EVENT_READ)
            start = time.monotonic()
            end = start + timeout_s
            sent = 0
            while True:
                now = time.monotonic()
                if sent < attempts and now >= start + sent * timeout_s / (2 * attempts):
                    for family, sockaddr in targets:
                        logger.debug("discovery datagram to %s", sockaddr)
                        sockets[family].sendto(DISCOVERY_MESSAGE, sockaddr)
                    sent += 1
                if now >= end:
                    break
                next_send = start + sent * timeout_s / (2 * attempts) if sent < attempts else end
                for key, _ in selector.select(max(0.0, min(end, next_send) - now)):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    try:
                        data, sender = ready.recvfrom(2048)
                    except OSError:
                        continue
                    server_port = _parse_reply(data)
                    if server_port is not None:
                        found[(_host_of(sender), server_port)] = None
    finally:
        for sock in sockets.values():
            sock.close()
    servers = list(found)
    logger.info("discovery found %d Alpaca server(s): %s", len(servers), servers)
    if not describe:
        return [AlpacaServer(host=h, port=p) for h, p in servers]
    return [describe_server(h, p, timeout_s=timeout_s) for h, p in servers]


def _host_of(sender: tuple[Any, ...]) -> str:
    host = str(sender[0])
    try:
        mapped = ipaddress.ip_address(host.split("%", maxsplit=1)[0])
    except ValueError:
        return host
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
        return str(mapped.ipv4_mapped)
    return host


def _parse_reply(data: bytes) -> int | None:
    try:
        doc = json.loads(data.decode("utf-8"))
        port = int(doc["AlpacaPort"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        logger.debug("ignoring a malformed discovery reply %r", data[:100])
        return None
    return port if 0 < port < 65536 else None
