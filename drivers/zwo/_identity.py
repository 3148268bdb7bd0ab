"""Who a camera is (serial number, ASI ID), how SDK failures become :mod:`drivers.errors`, and the
process-wide registry of cameras this process has open (so enumeration never opens them twice)."""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calibd.drivers.contracts import CameraInfo
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.zwo._worker import _CallTimeout
from calibd.drivers.zwo._worker import _SdkDeadline
from calibd.drivers.zwo._worker import _SdkWorker

log = logging.getLogger(__name__)

# ASI return codes that mean "this handle no longer reaches the camera".
_BAYER = {0: "RGGB", 1: "BGGR", 2: "GRBG", 3: "GBRG"}
_GONE_CODES = frozenset({1, 2, 4, 5})  # invalid index, invalid ID, camera closed, camera removed


class _Id8(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_ubyte * 8)]


_SerialFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Id8))


@dataclass(frozen=True)
class _Identity:
    model: str
    serial: str | None  # 16 upper-case hex digits
    asi_id: str | None  # user-set ID stored in the camera, if any

    @property
    def key(self) -> str:
        """Stable camera id: serial, else ASI ID, else (not unique!) the model."""
        return self.serial or self.asi_id or self.model

    def matches(self, wanted: str) -> bool:
        w = wanted.strip().casefold()
        return w in {v.casefold() for v in (self.serial, self.asi_id) if v} or (
            not self.serial and not self.asi_id and w == self.model.casefold()
        )

    def describe(self) -> str:
        parts = [self.model]
        if self.serial:
            parts.append(f"serial {self.serial}")
        if self.asi_id:
            parts.append(f"ASI id {self.asi_id!r}")
        return ", ".join(parts)


def _model_matches(wanted: str, name: str) -> bool:
    def norm(s: str) -> str:
        s = s.strip().casefold()
        return s[4:] if s.startswith("zwo ") else s

    return norm(wanted) == norm(name)


def _read_serial(zw: Any, cid: int) -> str | None:
    try:
        fn = _SerialFn(("ASIGetSerialNumber", zw.zwolib))
    except AttributeError:  # SDKs before 1.14 have no serial-number call
        return None
    sn = _Id8()
    rc = fn(cid, ctypes.byref(sn))
    if rc:
        if rc in _GONE_CODES:
            raise zw.zwo_errors[rc]
        return None  # ASI_ERROR_GENERAL_ERROR: this model has no serial number
    raw = bytes(sn.bytes)
    return raw.hex().upper() if any(raw) else None


def _read_asi_id(zw: Any, cid: int) -> str | None:
    try:
        text: str = zw._get_id(cid)
    except UnicodeDecodeError:
        return None
    text = text.strip("\x00 \t")
    return text if text and text.isprintable() else None


_Call = Callable[..., Any]  # call(what, fn, *args) -> fn(*args) with a deadline


def _optional(
    call: _Call, what: str, read: Callable[[Any, int], str | None], zw: Any, cid: int, name: str
) -> str | None:
    """``read(zw, cid)`` through ``call``; None (logged) when the camera has no such value.
    Raises DeviceUnavailable for a vanished camera."""
    try:
        value: str | None = call(what, read, zw, cid)
    except DeviceUnavailable:
        raise
    except DeviceError as err:
        log.debug("no %s for camera %d: %s", name, cid, err)
        return None
    return value


def _read_identity(call: _Call, zw: Any, cid: int, model: str) -> _Identity:
    """Serial and ASI ID of an *open* camera. Raises DeviceError for a vanished camera."""
    serial = _optional(call, "ASIGetSerialNumber", _read_serial, zw, cid, "serial number")
    asi_id = _optional(call, "ASIGetID", _read_asi_id, zw, cid, "ASI id")
    return _Identity(model=model, serial=serial, asi_id=asi_id)


def _translate(zw: Any, err: BaseException, what: str, error: type[DeviceError]) -> DeviceError:
    """A zwoasi / ctypes failure as one of drivers.errors (removal codes -> DeviceUnavailable)."""
    if isinstance(err, DeviceError):
        return err
    if isinstance(err, zw.ZWO_IOError):
        code = getattr(err, "error_code", None)
        cls = DeviceUnavailable if code in _GONE_CODES else error
        return cls(f"{what}: {err} (ASI error {code})")
    if isinstance(err, zw.ZWO_Error):
        return error(f"{what}: {err}")
    if isinstance(err, IndexError):  # zwoasi has no exception for codes above 17
        return error(f"{what}: unknown ASI error code ({err})")
    if isinstance(err, OSError):
        return DeviceUnavailable(f"{what}: {err}")
    return error(f"{what}: {type(err).__name__}: {err}")


def _worker_call(worker: _SdkWorker, zw: Any, deadline: float, device: str | None = None) -> _Call:
    """A ``call`` bound to a worker, an overall real-time deadline and error translation."""

    def call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _SdkDeadline(f"{what}: no time left", device=device)
        try:
            return worker.run(what, fn, *args, timeout_s=remaining)
        except _CallTimeout as err:
            raise _SdkDeadline(str(err), device=device) from None
        except Exception as err:
            raise _translate(zw, err, what, DeviceUnavailable) from err

    return call


# Cameras this process has open, by SDK handle (so enumeration never opens/closes them).
@dataclass
class _Entry:
    identity: _Identity
    owner: object
    worker: _SdkWorker


_REGISTRY: dict[int, _Entry] = {}
_REGISTRY_LOCK = threading.Lock()


def _registry_get(cid: int) -> _Entry | None:
    with _REGISTRY_LOCK:
        return _REGISTRY.get(cid)


def describe_camera(
    prop: dict[str, Any], identity: _Identity, caps: dict[str, dict[str, Any]], offset_name: str
) -> tuple[CameraInfo, float | None]:
    """The :class:`CameraInfo` of an open camera from its SDK property (``ASIGetCameraProperty``)
    and control caps, and its e-/ADU at gain 0 in native ADU (None when the SDK does not say).

    Exposure limits come in microseconds and are returned in seconds; set-point limits in °C.
    Pure: no SDK call, never blocks. Raises KeyError when a required control is missing (the
    caller checks for Gain, Exposure and the offset control first)."""
    gain, offset, exposure = caps["Gain"], caps[offset_name], caps["Exposure"]
    width, height = int(prop["MaxWidth"]), int(prop["MaxHeight"])
    bit_depth = int(prop.get("BitDepth") or 0)
    if not 8 <= bit_depth <= 16:
        bit_depth = 16
    e0 = float(prop.get("ElecPerADU") or 0.0)
    unity: int | None = None
    if e0 > 1.0:
        # Single-conversion-gain model (ZWO gain = 0.1 dB): e-/ADU(g) = e0 * 10^(-g/200).
        u = round(200.0 * math.log10(e0))
        unity = u if int(gain["MinValue"]) <= u <= int(gain["MaxValue"]) else None
    usb3 = bool(prop.get("IsUSB3Host")) and bool(prop.get("IsUSB3Camera"))
    readout_s = width * height * 2 / (150e6 if usb3 else 25e6) + 0.2  # coarse, for planning
    target = caps.get("TargetTemp")
    info = CameraInfo(
        model=str(prop["Name"]),
        camera_id=identity.key,
        width=width,
        height=height,
        bit_depth=bit_depth,
        pixel_size_um=float(prop["PixelSize"]),
        gain_min=int(gain["MinValue"]),
        gain_max=int(gain["MaxValue"]),
        offset_min=int(offset["MinValue"]),
        offset_max=int(offset["MaxValue"]),
        min_exposure_s=int(exposure["MinValue"]) / 1e6,
        max_exposure_s=int(exposure["MaxValue"]) / 1e6,
        has_cooler=bool(prop.get("IsCoolerCam")) and "CoolerOn" in caps,
        has_shutter=bool(prop.get("MechanicalShutter")),
        readout_modes=("default",),
        binnings=tuple(int(b) for b in prop.get("SupportedBins") or (1,)),
        bayer_pattern=_BAYER.get(int(prop["BayerPattern"])) if prop.get("IsColorCam") else None,
        unity_gain=unity,
        readout_s=readout_s,
        min_setpoint_c=float(target["MinValue"]) if target else None,
        max_setpoint_c=float(target["MaxValue"]) if target else None,
    )
    return info, (e0 if e0 > 0 else None)
