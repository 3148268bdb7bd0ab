"""INDI adapters (pyindi-client): camera, filter wheel, flat panel / dust cap, weather, mount,
dome / roll-off roof.

PyIndi is imported lazily, on the first connect, and only inside this package. All device
objects of a process that talk to the same indiserver (host and port, or local socket) share one
client connection (:mod:`drivers.indi._conn` explains the threading model).
"""

from __future__ import annotations

from calibd.drivers.indi._fits import decode_fits
from calibd.drivers.indi.camera import IndiCamera
from calibd.drivers.indi.camera import open_camera
from calibd.drivers.indi.dome import IndiDome
from calibd.drivers.indi.listing import list_devices
from calibd.drivers.indi.mount import IndiMount
from calibd.drivers.indi.panel import IndiFlatPanel
from calibd.drivers.indi.weather import IndiSafetyMonitor
from calibd.drivers.indi.wheel import IndiFilterWheel

__all__ = [
    "IndiCamera",
    "IndiDome",
    "IndiFilterWheel",
    "IndiFlatPanel",
    "IndiMount",
    "IndiSafetyMonitor",
    "decode_fits",
    "list_devices",
    "open_camera",
]
