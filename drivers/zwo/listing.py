"""Listing the connected ZWO cameras, and ``python -m calibd.drivers.zwo list|which`` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from calibd.drivers.contracts import DeviceListing
from calibd.drivers.errors import DeviceError
from calibd.drivers.zwo._identity import _Identity
from calibd.drivers.zwo._identity import _read_identity
from calibd.drivers.zwo._identity import _registry_get
from calibd.drivers.zwo._identity import _worker_call
from calibd.drivers.zwo._worker import _SdkDeadline
from calibd.drivers.zwo._worker import _SdkWorker
from calibd.drivers.zwo.sdk import _import_zwoasi
from calibd.drivers.zwo.sdk import load_sdk
from calibd.drivers.zwo.sdk import sdk_version

NO_CAMERAS_MESSAGE = "no ZWO cameras found"


def list_devices(*, sdk_path: str | None = None, timeout_s: float = 10.0) -> list[DeviceListing]:
    """Connected ZWO cameras, one :class:`DeviceListing` each (empty list: none connected).

    ``name`` is the camera id to put in the configuration (serial or ASI ID). Opens each camera
    briefly to read its serial unless this process already has it open. Blocks at most about
    ``timeout_s`` real seconds in total, whatever the SDK does. Raises DeviceUnavailable when the
    SDK cannot be found or loaded, or enumeration does not finish in time.
    """
    deadline = time.monotonic() + timeout_s
    load_sdk(sdk_path, timeout_s=timeout_s)
    zw = _import_zwoasi()
    worker = _SdkWorker("zwo-list")
    call = _worker_call(worker, zw, deadline, device="zwo")
    listings: list[DeviceListing] = []
    try:
        count = int(call("ASIGetNumOfConnectedCameras", zw.get_num_cameras))
        for index in range(count):
            prop = call("ASIGetCameraProperty", zw._get_camera_property, index)
            cid = int(prop["CameraID"])
            model = str(prop["Name"])
            entry = _registry_get(cid)
            note = ""
            identity: _Identity | None
            if entry is not None:
                identity = entry.identity
                note = "busy: an SDK call is blocked" if entry.worker.stuck else "open in calibd"
            else:
                try:
                    call("ASIOpenCamera", zw._open_camera, cid)
                    try:
                        identity = _read_identity(call, zw, cid, model)
                    finally:
                        with contextlib.suppress(DeviceError):
                            call("ASICloseCamera", zw._close_camera, cid)
                except _SdkDeadline:
                    raise
                except DeviceError as err:
                    identity, note = None, f"cannot open: {err}"
            listings.append(_listing(prop, identity, note))
    finally:
        worker.stop()
    return listings


def _listing(prop: dict[str, Any], identity: _Identity | None, note: str) -> DeviceListing:
    details = [str(prop["Name"])]
    if identity and identity.serial:
        details.append(f"serial {identity.serial}")
    if identity and identity.asi_id:
        details.append(f"ASI id {identity.asi_id!r}")
    details.append(f"{prop['MaxWidth']}x{prop['MaxHeight']} {prop['PixelSize']:g} um")
    details.append(f"{prop.get('BitDepth') or '?'}-bit")
    details.append("cooled" if prop.get("IsCoolerCam") else "uncooled")
    details.append("USB3" if prop.get("IsUSB3Camera") else "USB2")
    if note:
        details.append(note)
    name = identity.key if identity else str(prop["Name"])
    return DeviceListing(kind="camera", name=name, details=", ".join(details))

def _iter_lines(devices: list[DeviceListing]) -> Iterator[str]:
    for d in devices:
        yield f"{d.name}\t{d.details}"


def main(argv: list[str] | None = None) -> int:
    """``python -m calibd.drivers.zwo list|which [--sdk PATH] [--timeout S]``.

    Exit 0 ok, 1 failure."""
    parser = argparse.ArgumentParser(
        prog="python -m calibd.drivers.zwo",
        description="List ZWO ASI cameras / show the SDK in use."
    )
    parser.add_argument("command", choices=("list", "which"))
    parser.add_argument("--sdk", help="path of libASICamera2.so (default: search)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args(argv)
    try:
        if args.command == "which":
            location = load_sdk(args.sdk, timeout_s=args.timeout)
            print(f"{location.path}\t{location.source}\tSDK {sdk_version() or '?'}")
            return 0
        devices = list_devices(sdk_path=args.sdk, timeout_s=args.timeout)
    except DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not devices:
        print(NO_CAMERAS_MESSAGE)
    for line in _iter_lines(devices):
        print(line)
    return 0


