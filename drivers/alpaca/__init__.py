"""ASCOM Alpaca drivers: camera, flat panel (CoverCalibrator), filter wheel, safety monitor /
weather, mount (Telescope), dome, and discovery.

Importing this package does not import alpyca; each device imports it when it connects.

Configuration: every device is addressed by ``host``, ``port`` and ``device_number`` (the
``alpaca://host:port/type/n`` names printed by :func:`list_devices` / :func:`discover` parse back
with :func:`parse_device_name`).
"""

from calibd.drivers.alpaca._base import Quirk
from calibd.drivers.alpaca.camera import AlpacaCamera
from calibd.drivers.alpaca.discovery import AlpacaServer
from calibd.drivers.alpaca.discovery import describe_server
from calibd.drivers.alpaca.discovery import device_name
from calibd.drivers.alpaca.discovery import discover
from calibd.drivers.alpaca.discovery import list_devices
from calibd.drivers.alpaca.discovery import parse_device_name
from calibd.drivers.alpaca.dome import AlpacaDome
from calibd.drivers.alpaca.mount import AlpacaMount
from calibd.drivers.alpaca.panel import AlpacaFlatPanel
from calibd.drivers.alpaca.safety import AlpacaSafetyMonitor
from calibd.drivers.alpaca.wheel import AlpacaFilterWheel

__all__ = [
    "AlpacaCamera",
    "AlpacaDome",
    "AlpacaFilterWheel",
    "AlpacaFlatPanel",
    "AlpacaMount",
    "AlpacaSafetyMonitor",
    "AlpacaServer",
    "Quirk",
    "describe_server",
    "device_name",
    "discover",
    "list_devices",
    "parse_device_name",
]
