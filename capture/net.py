"""Is an address this machine only? (The API and the Alpaca server refuse to serve beyond it
without a token / with a warning.)"""

from __future__ import annotations

import ipaddress
import socket


def is_loopback_literal(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; False for anything else, including
    ``0.0.0.0`` and host names (never resolves; for validating configuration)."""
    name = host.strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """True when ``host`` (an IP literal, ``localhost``, or a name) means this machine only:
    every address it resolves to is a loopback address. Names are resolved (blocking)."""
    if is_loopback_literal(host):
        return True
    name = host.strip("[]")
    try:
        ipaddress.ip_address(name)
        return False  # a literal that is not loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)
