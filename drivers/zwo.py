"""ZWO ASI cameras through the ``zwoasi`` ctypes bindings and ZWO's ``libASICamera2``.

**Finding the SDK** (no manual steps): an explicit ``sdk_path``; else ``$ZWO_ASI_LIB`` or
``$CALIBD_ZWO_SDK``; else a system copy (``ctypes.util.find_library("ASICamera2")`` and the usual
library directories, e.g. where INDI's ``libasi`` package installs it, or an unpacked SDK under
``/opt``); else the copy bundled in the PyPI package ``pyzwoasi``
(``pyzwoasi/lib/Linux/<arch>/libASICamera2.so.*``), located through ``importlib.metadata`` without
importing pyzwoasi (its import pulls in OpenCV). ``pip install --no-deps pyzwoasi`` is therefore
enough on a fresh machine. The library is loaded once per process (``zwoasi.init`` cannot switch
libraries); asking for a different one later raises :class:`~drivers.errors.DeviceUnavailable`.

**Licences.** pyzwoasi itself is MIT-licensed. The ``libASICamera2`` it bundles is ZWO's closed,
proprietary SDK binary: the wheel carries no licence text for it, ZWO publishes the SDK as a free
download for developers, and other projects (INDI's ``libasi``, PHD2, INDIGO) redistribute the same
binary with their drivers; no explicit redistribution grant from ZWO was found. calibd therefore
never ships or copies the library: it only loads a copy the user installed (from ZWO, a distribution
package, or pyzwoasi). ``zwoasi`` is MIT-licensed.

**Blocking and deadlines.** ZWO cameras hang and drop off USB in the field, so every SDK call of a
camera runs on that camera's own worker thread and the caller waits with a deadline
(``call_timeout_s``, default 10 s). An exposure is polled until ``2 x exposure + 0.5 s + download``
(ZWO's recommendation; ``timeout_s`` overrides it); a running exposure past that is stopped and
raises :class:`~drivers.errors.ExposureTimeout`. A call that does not return in time abandons the
worker (a daemon thread, never joined) and marks the camera unavailable
(:class:`~drivers.errors.DeviceUnavailable`); while that call is still stuck inside the SDK,
:meth:`ZwoCamera.connect` refuses at once (no second thread is sent into a wedged camera), and once
it returns, ``connect()`` re-enumerates and opens the camera again on a fresh worker. A call that
never returns at all leaves the camera unavailable until the process restarts.

**Identity.** Cameras are found by serial number (``ASIGetSerialNumber``, printed as 16 hex
digits) or by the user-settable ASI ID, never by USB index. The SDK's camera handle (``CameraID``)
can change when a camera re-enumerates, so it is re-read on every connect.

**zwoasi quirks handled here.** ``zwoasi.Camera`` uses the enumeration index as the camera handle
and its ``__del__`` closes the camera from the garbage collector (on any thread, without a
deadline); ``zwoasi``'s ROI helper passes the handle where the SDK expects an index. This module
therefore uses zwoasi's module-level wrappers with the real ``CameraID`` and calls the bound
``ASISetROIFormat`` itself. Images are RAW16, full frame at the binning, start position 0,0; the
width is rounded down to a multiple of 8 and the height to a multiple of 2 as the SDK requires
(the frame's shape says what was read out).

Run ``python -m drivers.zwo list`` to list connected cameras (``calibd devices list --driver zwo``
prints the same).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import glob
import importlib.metadata
import logging
import math
import os
import platform
import queue
import struct
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.clock import Clock, RealClock
from drivers.contracts import CameraInfo, CaptureSettings, CoolerState, DeviceListing, Frame
from drivers.errors import (
    DeviceError,
    DeviceUnavailable,
    ExposureFailed,
    ExposureTimeout,
    NotSupported,
    SettingRejected,
)

log = logging.getLogger(__name__)

NO_CAMERAS_MESSAGE = "no ZWO cameras found"
ENV_VARS = ("ZWO_ASI_LIB", "CALIBD_ZWO_SDK")
LIBRARY_GLOB = "libASICamera2.so*"

# ASI return codes that mean "this handle no longer reaches the camera".
_GONE_CODES = frozenset({1, 2, 4, 5})  # invalid index, invalid ID, camera closed, camera removed
_EXP_IDLE, _EXP_WORKING, _EXP_SUCCESS, _EXP_FAILED = 0, 1, 2, 3
_IMG_RAW16 = 2
_BAYER = {0: "RGGB", 1: "BGGR", 2: "GRBG", 3: "GBRG"}
# Poll intervals in real seconds: while the exposure runs (also catches a vanished camera), just
# after its expected end, and later.
_LONG_POLL_S = 2.0
_FAST_POLL_S = 0.01
_SLOW_POLL_S = 0.1
_EXPOSURE_MARGIN_S = 0.5  # ZWO: wait 2 x exposure + 500 ms before giving up
_CLOSE_TIMEOUT_S = 2.0
# pyzwoasi's directory names per machine architecture.
_ARCH_DIRS = {
    "x86_64": ("x64", "x86_64", "amd64"),
    "amd64": ("x64", "x86_64", "amd64"),
    "i386": ("x86",),
    "i686": ("x86",),
    "x86": ("x86",),
    "aarch64": ("armv8", "arm64", "aarch64"),
    "arm64": ("armv8", "arm64", "aarch64"),
    "armv7l": ("armv7",),
    "armv6l": ("armv6",),
}


# ------------------------------------------------------------------------------------------------
# Worker thread with per-call deadlines


class _SdkDeadline(DeviceUnavailable):
    """An SDK call did not return in time (the worker that ran it is abandoned)."""


class _CallTimeout(Exception):
    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(f"{what} did not return within {timeout_s:.1f} s")
        self.what = what
        self.timeout_s = timeout_s


_Job = tuple[str, Callable[..., Any], tuple[Any, ...], "Future[Any]"]


class _SdkWorker:
    """One daemon thread that runs SDK calls in submission order; callers wait with a deadline.

    A call past its deadline *abandons* the worker: the thread finishes the stuck call whenever the
    SDK lets it, runs nothing else, and exits. It is never joined.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self.current: str | None = None
        self.current_since = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    @property
    def stuck(self) -> bool:
        """Abandoned and still inside an SDK call."""
        return self._abandoned.is_set() and self._thread.is_alive()

    def run(self, what: str, fn: Callable[..., Any], *args: Any, timeout_s: float) -> Any:
        """Run ``fn(*args)`` on the worker; blocks at most ``timeout_s`` real seconds.

        Returns its result or re-raises its exception; raises _CallTimeout past the deadline (the
        worker is then abandoned) or at once if it already is.
        """
        if self._abandoned.is_set():
            raise _CallTimeout(what, 0.0)
        fut: Future[Any] = Future()
        self._queue.put((what, fn, args, fut))
        try:
            return fut.result(timeout=max(timeout_s, 0.0))
        except FutureTimeout:
            if fut.cancel():  # never started: the worker is busy with an earlier stuck call
                what = f"{what} (queued behind {self.current or 'another call'})"
            self.abandon()
            raise _CallTimeout(what, timeout_s) from None

    def abandon(self) -> None:
        self._abandoned.set()
        self._queue.put(None)

    def stop(self) -> None:
        """Let the thread exit after queued calls (never blocks)."""
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._abandoned.is_set():
                return
            what, fn, args, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            self.current, self.current_since = what, time.monotonic()
            try:
                result = fn(*args)
            except BaseException as err:  # handed to the caller through the future
                fut.set_exception(err)
            else:
                fut.set_result(result)
            finally:
                self.current = None
            if self._abandoned.is_set():
                return


# ------------------------------------------------------------------------------------------------
# Finding and loading the SDK


@dataclass(frozen=True)
class SdkLocation:
    """Where the ASI SDK library comes from: ``path`` and a human-readable ``source``."""

    path: str
    source: str


class _SdkState:
    """The process-wide loaded library (zwoasi holds one; so do we)."""

    lock = threading.Lock()
    location: SdkLocation | None = None


def _arch_dirs() -> tuple[str, ...]:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and struct.calcsize("P") == 4:
        machine = "i686"  # 32-bit Python on a 64-bit kernel
    return _ARCH_DIRS.get(machine, (machine,))


def _system_dirs() -> list[str]:
    dirs = ["/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64", "/lib"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs[1:1] = [f"/usr/local/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    return dirs


def _system_library() -> SdkLocation | None:
    """A system-wide copy: the linker's search (ldconfig), then common install directories."""
    name = ctypes.util.find_library("ASICamera2")
    if name:
        for d in _system_dirs():
            candidate = Path(d) / name
            if candidate.is_file():
                return SdkLocation(str(candidate), "system library (ldconfig)")
        return SdkLocation(name, "system library (ldconfig)")
    patterns = [os.path.join(d, LIBRARY_GLOB) for d in _system_dirs()]
    patterns += [f"/opt/*/lib/{arch}/{LIBRARY_GLOB}" for arch in _arch_dirs()]
    patterns += [f"/opt/*/lib/{LIBRARY_GLOB}"]
    for pattern in patterns:
        for hit in sorted(glob.glob(pattern)):
            if os.path.isfile(hit):
                return SdkLocation(hit, f"system library ({os.path.dirname(hit)})")
    return None


def _pyzwoasi_library() -> SdkLocation | None:
    """The SDK binary bundled in an installed ``pyzwoasi`` wheel (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("pyzwoasi")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not sys.platform.startswith("linux"):
        return None
    wanted = _arch_dirs()
    for entry in dist.files or ():
        parts = entry.parts
        if (
            len(parts) == 5
            and parts[:3] == ("pyzwoasi", "lib", "Linux")
            and parts[3] in wanted
            and parts[4].startswith("libASICamera2.so")
        ):
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return SdkLocation(str(path), f"pyzwoasi {dist.version} (bundled ZWO SDK)")
    return None


def find_sdk(sdk_path: str | None = None) -> SdkLocation:
    """Locate ``libASICamera2`` in the documented order (see the module docstring).

    Never loads anything. Raises DeviceUnavailable naming what was tried when nothing is found, or
    when an explicit path or environment variable names a file that does not exist.
    """
    if sdk_path:
        if not os.path.isfile(sdk_path):
            raise DeviceUnavailable(f"ASI SDK library {sdk_path!r} (sdk_path) does not exist")
        return SdkLocation(sdk_path, "configured sdk_path")
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            if not os.path.isfile(value):
                raise DeviceUnavailable(f"ASI SDK library {value!r} (${var}) does not exist")
            return SdkLocation(value, f"${var}")
    found = _system_library() or _pyzwoasi_library()
    if found is None:
        raise DeviceUnavailable(
            "ZWO ASI SDK library (libASICamera2.so) not found: no sdk_path, "
            f"${' or $'.join(ENV_VARS)} unset, none in {', '.join(_system_dirs())} or /opt, "
            "and no pyzwoasi package installed. Install it with "
            "'pip install --no-deps pyzwoasi' (bundles ZWO's SDK) or point $ZWO_ASI_LIB at it."
        )
    return found


def _loaded_asi_libraries() -> list[str]:
    """Paths of mapped libASICamera2 files in this process (Linux /proc), for identity checks."""
    paths: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and "ASICamera2" in fields[5]:
                path = fields[5].strip()
                if path not in paths:
                    paths.append(path)
    return paths


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class _DropImportWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASI SDK library not found"


def _import_zwoasi() -> Any:
    """Import zwoasi quietly: its import-time ``init()`` logs a warning through the *root* logger
    when no system SDK exists (which also installs a stderr handler via basicConfig)."""
    if "zwoasi" in sys.modules:
        return sys.modules["zwoasi"]
    root = logging.getLogger()
    handlers = list(root.handlers)
    quiet = _DropImportWarning()
    root.addFilter(quiet)
    try:
        import zwoasi
    except ImportError as err:
        raise DeviceUnavailable(
            f"the zwoasi package is not installed ({err}); pip install 'calibd[zwo]'"
        ) from err
    finally:
        root.removeFilter(quiet)
        for handler in root.handlers[:]:
            if handler not in handlers:  # added by zwoasi's logging.warning -> basicConfig
                root.removeHandler(handler)
    return zwoasi


def _load_sdk_now(sdk_path: str | None) -> SdkLocation:
    with _SdkState.lock:
        zw = _import_zwoasi()
        if _SdkState.location is None and zw.zwolib is not None:
            # zwoasi's import found a system library on its own (find_library).
            mapped = _loaded_asi_libraries()
            path = mapped[0] if mapped else str(getattr(zw.zwolib, "_name", "libASICamera2"))
            _SdkState.location = SdkLocation(path, "system library (loaded by zwoasi at import)")
        loaded = _SdkState.location
        if loaded is not None:
            if sdk_path and not _same_file(sdk_path, loaded.path):
                raise DeviceUnavailable(
                    f"the ASI SDK is already loaded from {loaded.path} ({loaded.source}); zwoasi "
                    f"loads one library per process, so {sdk_path} cannot be used without a restart"
                )
            return loaded
        location = find_sdk(sdk_path)
        try:
            zw.init(location.path)
        except (OSError, AttributeError, zw.ZWO_Error) as err:
            zw.zwolib = None  # a half-bound library must not be used by a later attempt
            raise DeviceUnavailable(
                f"cannot load the ASI SDK {location.path} ({location.source}): {err}"
            ) from err
        _SdkState.location = location
        log.info(
            "ASI SDK %s loaded from %s (%s)", sdk_version() or "?", location.path, location.source
        )
        return location


def load_sdk(sdk_path: str | None = None, *, timeout_s: float = 10.0) -> SdkLocation:
    """Load the SDK into zwoasi once per process and return where it came from.

    Blocks at most ``timeout_s`` real seconds (loading runs on a helper thread). Raises
    DeviceUnavailable: nothing found, the library fails to load, a different library is already
    loaded, or loading did not finish in time.
    """
    if _SdkState.location is not None and not sdk_path:
        return _SdkState.location
    worker = _SdkWorker("zwo-load")
    try:
        location: SdkLocation = worker.run(
            "load ASI SDK", _load_sdk_now, sdk_path, timeout_s=timeout_s
        )
        return location
    except _CallTimeout as err:
        raise DeviceUnavailable(f"loading the ASI SDK: {err}") from None
    finally:
        worker.stop()


def sdk_version() -> str | None:
    """The loaded SDK's version string (e.g. "1, 41, 0, 0"), None before loading. Quick, local."""
    zw = sys.modules.get("zwoasi")
    if zw is None or zw.zwolib is None:
        return None
    try:
        fn = ctypes.CFUNCTYPE(ctypes.c_char_p)(("ASIGetSDKVersion", zw.zwolib))
        raw = fn()
    except (AttributeError, OSError):
        return None
    return raw.decode(errors="replace") if raw else None


# ------------------------------------------------------------------------------------------------
# Identity and error translation


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


def _read_identity(call: _Call, zw: Any, cid: int, model: str) -> _Identity:
    """Serial and ASI ID of an *open* camera. Raises DeviceError for a vanished camera."""
    serial: str | None = None
    asi_id: str | None = None
    try:
        serial = call("ASIGetSerialNumber", _read_serial, zw, cid)
    except DeviceUnavailable:
        raise
    except DeviceError as err:
        log.debug("no serial number for camera %d: %s", cid, err)
    try:
        asi_id = call("ASIGetID", _read_asi_id, zw, cid)
    except DeviceUnavailable:
        raise
    except DeviceError as err:
        log.debug("no ASI id for camera %d: %s", cid, err)
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


# ------------------------------------------------------------------------------------------------
# Listing


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


# ------------------------------------------------------------------------------------------------
# The camera


class ZwoCamera:
    """One ZWO ASI camera, implementing :class:`drivers.contracts.Camera`.

    ``camera_id``: serial (16 hex digits) or ASI ID; None takes the only camera connected (of
    ``model``, if given) and remembers its id for reconnects. ``usb_bandwidth`` (percent) and
    ``high_speed`` are applied on every connect when given. ``call_timeout_s`` bounds every single
    SDK call (real seconds); connecting makes a few dozen calls. ``clock`` supplies frame times
    and converts clock-second timeouts to real seconds (a scaled clock in tests). ``name`` labels
    log lines and errors (default ``zwo:<camera id>``).

    Thread safety: SDK calls are serialised on the camera's worker thread, so :meth:`abort` and
    :meth:`cooler_state` may be called while another thread is in :meth:`expose`.
    """

    def __init__(
        self,
        *,
        camera_id: str | None = None,
        model: str | None = None,
        sdk_path: str | None = None,
        usb_bandwidth: int | None = None,
        high_speed: bool | None = None,
        call_timeout_s: float = 10.0,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        if not call_timeout_s > 0:
            raise SettingRejected(f"call_timeout_s must be > 0, got {call_timeout_s}")
        self._name = name
        self._wanted = camera_id.strip() if camera_id else None
        self._model = model
        self._sdk_path = sdk_path
        self._usb_bandwidth = usb_bandwidth
        self._high_speed = high_speed
        self._call_timeout_s = float(call_timeout_s)
        self._clock: Clock = clock or RealClock()
        self._zw: Any = None
        self._worker: _SdkWorker | None = None
        self._stuck: list[_SdkWorker] = []
        self._cid: int | None = None
        self._identity: _Identity | None = None
        self._info: CameraInfo | None = None
        self._caps: dict[str, dict[str, Any]] = {}
        self._offset_name = "Offset"
        self._e_per_adu0: float | None = None
        self._roi = (0, 0, 1)  # width, height, binning as read back
        self._settings: CaptureSettings | None = None  # as read back
        self._requested: CaptureSettings | None = None  # last successful configure() request
        self._cooler_request: tuple[bool, float | None] | None = None
        self._ready = False
        self._lost_reason: str | None = None
        self._state_lock = threading.Lock()
        self._exposing = False
        self._abort = threading.Event()

    # ----- contract: properties -----------------------------------------------------------
    @property
    def label(self) -> str:
        """How log lines and errors name this camera."""
        if self._name:
            return self._name
        if self._identity is not None:
            return f"zwo:{self._identity.key}"
        return f"zwo:{self._wanted or self._model or 'default'}"

    @property
    def info(self) -> CameraInfo:
        """Capabilities, read at connect. Raises DeviceUnavailable before the first connect."""
        if self._info is None:
            raise DeviceUnavailable("not connected", device=self.label)
        return self._info

    @property
    def connected(self) -> bool:
        """True while the camera is open and no call has failed or hung (never blocks)."""
        worker = self._worker
        return (
            self._ready
            and self._lost_reason is None
            and worker is not None
            and (not worker.abandoned)
        )

    # ----- contract: lifecycle ------------------------------------------------------------
    def connect(self) -> None:
        """Find the camera by id (never by index), open it on a fresh worker, apply RAW16 full
        frame, USB settings, and restore earlier settings and cooler state after a reconnect.

        Idempotent. Blocks for a few dozen SDK calls, each bounded by ``call_timeout_s``. Raises
        DeviceUnavailable (SDK missing, camera absent, a previous call still stuck, a call hung),
        SettingRejected / NotSupported for an impossible ``usb_bandwidth`` / ``high_speed``.
        """
        if self.connected:
            return
        self._check_not_stuck()
        self._release(close=False)
        load_sdk(self._sdk_path, timeout_s=self._call_timeout_s)
        self._zw = _import_zwoasi()
        self._worker = _SdkWorker(f"zwo-{self._wanted or 'camera'}")
        self._lost_reason = None
        try:
            cid, prop, identity = self._find_camera()
            self._cid, self._identity = cid, identity
            with _REGISTRY_LOCK:
                _REGISTRY[cid] = _Entry(identity=identity, owner=self, worker=self._worker)
            self._setup(prop, identity)
            self._ready = True
            self._restore()
        except BaseException:
            self._ready = False
            self._release(close=True)
            raise
        log.info("%s connected (%s, handle %d)", self.label, identity.describe(), cid)

    def disconnect(self) -> None:
        """Close the camera (bounded by 2 s) and stop its worker. Never raises."""
        try:
            self._release(close=True)
        except Exception:  # the contract: never raises
            log.exception("%s: error while disconnecting", self.label)
        self._ready = False

    # ----- contract: settings -------------------------------------------------------------
    def configure(self, settings: CaptureSettings) -> CaptureSettings:
        """Set gain, offset and binning (RAW16, full frame at that binning) and read them back.

        Raises SettingRejected (out of range, unknown read-out mode, the camera applied something
        else) or DeviceUnavailable.
        """
        info = self._require()
        if settings.readout_mode not in info.readout_modes:
            raise SettingRejected(
                f"read-out mode {settings.readout_mode!r} not offered "
                f"(modes: {', '.join(info.readout_modes)})",
                device=self.label,
            )
        _check_range("gain", settings.gain, info.gain_min, info.gain_max, self.label)
        _check_range("offset", settings.offset, info.offset_min, info.offset_max, self.label)
        if settings.binning not in info.binnings:
            raise SettingRejected(
                f"binning {settings.binning} not offered (binnings: {info.binnings})",
                device=self.label,
            )
        self._set("Gain", settings.gain)
        self._set(self._offset_name, settings.offset)
        if self._roi[2] != settings.binning:
            self._apply_roi(settings.binning)
        applied = self._read_settings()
        for name, want, got in (
            ("gain", settings.gain, applied.gain),
            ("offset", settings.offset, applied.offset),
            ("binning", settings.binning, applied.binning),
        ):
            if want != got:
                raise SettingRejected(
                    f"camera applied {name} {got} instead of {want}", device=self.label
                )
        self._settings = applied
        self._requested = settings
        return applied

    # ----- contract: cooler ---------------------------------------------------------------
    def cooler_state(self) -> CoolerState:
        """Temperature (from 0.1 °C units), cooler on, set-point (whole °C) and power (%).

        Four quick SDK calls. Raises NotSupported (no cooler) or DeviceUnavailable.
        """
        info = self._require()
        if not info.has_cooler:
            raise NotSupported("camera has no cooler", device=self.label)
        temp = self._get("Temperature") / 10.0
        on = bool(self._get("CoolerOn"))
        setpoint = float(self._get("TargetTemp"))
        power = float(self._get("CoolPowerPerc")) if "CoolPowerPerc" in self._caps else None
        return CoolerState(temperature_c=temp, on=on, setpoint_c=setpoint, power_pct=power)

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        """Switch the cooler and set the target; ZWO set-points are whole degrees (rounded).

        Does not wait for the temperature. Raises SettingRejected (out of range, not applied),
        NotSupported (no cooler), DeviceUnavailable.
        """
        info = self._require()
        if not info.has_cooler:
            raise NotSupported("camera has no cooler", device=self.label)
        target: int | None = None
        if setpoint_c is not None:
            lo = info.min_setpoint_c if info.min_setpoint_c is not None else -math.inf
            hi = info.max_setpoint_c if info.max_setpoint_c is not None else math.inf
            if not (math.isfinite(setpoint_c) and lo <= setpoint_c <= hi):
                raise SettingRejected(
                    f"set-point {setpoint_c} °C outside {lo:g}..{hi:g} °C", device=self.label
                )
            target = round(setpoint_c)
            if abs(target - setpoint_c) > 0.05:
                log.warning("%s: set-point %.2f °C -> %d °C", self.label, setpoint_c, target)
            self._set("TargetTemp", target)
        self._set("CoolerOn", 1 if on else 0)
        got_on = bool(self._get("CoolerOn"))
        got_target = self._get("TargetTemp")
        if got_on != on or (target is not None and got_target != target):
            raise SettingRejected(
                f"cooler reads back on={got_on} target={got_target} °C", device=self.label
            )
        self._cooler_request = (on, float(got_target))

    # ----- contract: exposures ------------------------------------------------------------
    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        """Take one RAW16 exposure and return it once downloaded.

        Blocks for about exposure + read-out. The exposure must finish by ``timeout_s`` clock
        seconds (default ``2 x exposure + 0.5 s + download``), after which it is stopped; a stop or
        download call gets at least its own ``call_timeout_s`` on top. Raises SettingRejected
        (exposure outside the camera's range), ExposureFailed (the camera reported failure, or
        aborted), ExposureTimeout, DeviceUnavailable (camera removed, or an SDK call hung).
        """
        with self._state_lock:
            if self._exposing:
                raise ExposureFailed("another exposure is already running", device=self.label)
            self._exposing = True
            self._abort.clear()
        try:
            return self._expose(exposure_s, dark, timeout_s)
        finally:
            with self._state_lock:
                self._exposing = False
                self._abort.clear()

    def abort(self) -> None:
        """Ask a running :meth:`expose` to stop the exposure; no-op when idle. Never raises."""
        with self._state_lock:
            if self._exposing:
                self._abort.set()

    # ----- internals: connect -------------------------------------------------------------
    def _check_not_stuck(self) -> None:
        self._stuck = [w for w in self._stuck if w.stuck]
        if self._stuck:
            w = self._stuck[0]
            since = time.monotonic() - w.current_since if w.current else 0.0
            raise DeviceUnavailable(
                f"an SDK call ({w.current or 'unknown'}) has been blocked for {since:.0f} s; the "
                "camera stays unavailable until it returns (power-cycle the camera, or restart "
                "calibd, if it never does)",
                device=self.label,
            )

    def _release(self, *, close: bool) -> None:
        """Forget the handle and stop the worker; optionally close the camera first."""
        worker, cid, zw = self._worker, self._cid, self._zw
        if close and worker is not None and not worker.abandoned and cid is not None:
            try:
                worker.run("ASICloseCamera", zw._close_camera, cid, timeout_s=_CLOSE_TIMEOUT_S)
            except _CallTimeout:
                self._stuck.append(worker)
                log.warning("%s: ASICloseCamera hung; worker abandoned", self.label)
            except Exception as err:
                log.debug("%s: close: %s", self.label, err)
        if worker is not None:
            worker.stop()
        with _REGISTRY_LOCK:
            for old in [c for c, e in _REGISTRY.items() if e.owner is self and not e.worker.stuck]:
                del _REGISTRY[old]
        self._worker = None
        self._cid = None
        self._ready = False

    def _call_any(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """A call during connect: errors do not mark the camera lost (only hangs do)."""
        return self._call(what, fn, *args, error=DeviceUnavailable, mark_lost=False)

    def _find_camera(self) -> tuple[int, dict[str, Any], _Identity]:
        zw = self._zw
        wanted = self._identity.key if self._identity is not None else self._wanted
        count = int(self._call_any("ASIGetNumOfConnectedCameras", zw.get_num_cameras))
        seen: list[str] = []
        matches: list[tuple[int, dict[str, Any], _Identity]] = []
        for index in range(count):
            prop = self._call_any("ASIGetCameraProperty", zw._get_camera_property, index)
            cid, name = int(prop["CameraID"]), str(prop["Name"])
            if self._model and not _model_matches(self._model, name):
                seen.append(name)
                continue
            entry = _registry_get(cid)
            if entry is not None and entry.owner is not self:
                seen.append(f"{entry.identity.describe()} (in use in this process)")
                continue
            try:
                self._call_any("ASIOpenCamera", zw._open_camera, cid)
                identity = _read_identity(self._call_any, zw, cid, name)
            except _SdkDeadline:
                raise
            except DeviceError as err:
                seen.append(f"{name} (cannot open: {err})")
                continue
            seen.append(identity.describe())
            if wanted is None or identity.matches(wanted):
                matches.append((cid, prop, identity))
            else:
                with contextlib.suppress(DeviceError):
                    self._call_any("ASICloseCamera", zw._close_camera, cid)
        found = ", ".join(seen) or "none"
        if not matches:
            what = f"camera {wanted!r}" if wanted else "a ZWO camera"
            if self._model:
                what += f" of model {self._model!r}"
            raise DeviceUnavailable(f"{what} not found (connected: {found})", device=self.label)
        if len(matches) > 1:
            for cid, _, _ in matches:
                with contextlib.suppress(DeviceError):
                    self._call_any("ASICloseCamera", zw._close_camera, cid)
            raise DeviceUnavailable(
                f"{len(matches)} cameras match ({found}); set camera_id to a serial",
                device=self.label,
            )
        return matches[0]

    def _setup(self, prop: dict[str, Any], identity: _Identity) -> None:
        zw, cid = self._zw, self._cid
        self._call_any("ASIInitCamera", zw._init_camera, cid)
        n = int(self._call_any("ASIGetNumOfControls", zw._get_num_controls, cid))
        caps: dict[str, dict[str, Any]] = {}
        for i in range(n):
            c = self._call_any("ASIGetControlCaps", zw._get_control_caps, cid, i)
            caps[str(c["Name"])] = c
        self._caps = caps
        self._offset_name = "Offset" if "Offset" in caps else "Brightness"
        for required in ("Gain", "Exposure", self._offset_name):
            if required not in caps:
                raise DeviceUnavailable(f"camera lacks the {required} control", device=self.label)
        if "Flip" in caps:
            self._set("Flip", 0, error=DeviceUnavailable)  # rows top-down, as delivered
        if self._usb_bandwidth is not None:
            bw = caps.get("BandWidth")
            if bw is None:
                raise NotSupported("camera has no USB bandwidth control", device=self.label)
            _check_range(
                "usb_bandwidth", self._usb_bandwidth, bw["MinValue"], bw["MaxValue"], self.label
            )
            self._set("BandWidth", self._usb_bandwidth)
        if self._high_speed is not None:
            if "HighSpeedMode" not in caps:
                raise NotSupported("camera has no high-speed mode", device=self.label)
            self._set("HighSpeedMode", 1 if self._high_speed else 0)
        self._info = self._make_info(prop, identity, caps)
        self._apply_roi(1)
        self._settings = self._read_settings()

    def _make_info(
        self, prop: dict[str, Any], identity: _Identity, caps: dict[str, dict[str, Any]]
    ) -> CameraInfo:
        gain, offset, exposure = caps["Gain"], caps[self._offset_name], caps["Exposure"]
        width, height = int(prop["MaxWidth"]), int(prop["MaxHeight"])
        bit_depth = int(prop.get("BitDepth") or 0)
        if not 8 <= bit_depth <= 16:
            bit_depth = 16
        e0 = float(prop.get("ElecPerADU") or 0.0)
        self._e_per_adu0 = e0 if e0 > 0 else None
        unity: int | None = None
        if e0 > 1.0:
            # Single-conversion-gain model (ZWO gain = 0.1 dB): e-/ADU(g) = e0 * 10^(-g/200).
            u = round(200.0 * math.log10(e0))
            unity = u if int(gain["MinValue"]) <= u <= int(gain["MaxValue"]) else None
        usb3 = bool(prop.get("IsUSB3Host")) and bool(prop.get("IsUSB3Camera"))
        readout_s = width * height * 2 / (150e6 if usb3 else 25e6) + 0.2  # coarse, for planning
        target = caps.get("TargetTemp")
        return CameraInfo(
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

    def _restore(self) -> None:
        """After a reconnect, put back what the caller had configured (a re-powered camera comes
        back with its defaults and the cooler off)."""
        if self._requested is not None:
            self.configure(self._requested)
        if self._cooler_request is not None:
            on, setpoint = self._cooler_request
            self.set_cooler(on, setpoint)

    def _apply_roi(self, binning: int) -> None:
        info = self.info
        zw, cid = self._zw, self._cid
        width = (info.width // binning) // 8 * 8
        height = (info.height // binning) // 2 * 2
        if (width * binning, height * binning) != (info.width, info.height):
            log.info(
                "%s: bin %d reads %dx%d (SDK needs width %% 8 == 0, height %% 2 == 0)",
                self.label,
                binning,
                width,
                height,
            )

        def set_roi(cid: int, w: int, h: int, b: int) -> None:
            rc = zw.zwolib.ASISetROIFormat(cid, w, h, b, _IMG_RAW16)
            if rc:
                raise zw.zwo_errors[rc]

        self._call(
            f"ASISetROIFormat {width}x{height} bin {binning}",
            set_roi,
            cid,
            width,
            height,
            binning,
            error=SettingRejected,
        )
        self._call("ASISetStartPos 0,0", zw._set_start_position, cid, 0, 0, error=SettingRejected)
        got = self._call_any("ASIGetROIFormat", zw._get_roi_format, cid)
        start = self._call_any("ASIGetStartPos", zw._get_start_position, cid)
        if list(got) != [width, height, binning, _IMG_RAW16] or list(start) != [0, 0]:
            raise SettingRejected(
                f"camera reads back ROI {got} at {start}, wanted "
                f"[{width}, {height}, {binning}, RAW16] at [0, 0]",
                device=self.label,
            )
        self._roi = (width, height, binning)

    # ----- internals: calls ---------------------------------------------------------------
    def _require(self) -> CameraInfo:
        if not self.connected:
            reason = self._lost_reason or "not connected"
            raise DeviceUnavailable(reason, device=self.label)
        return self.info

    def _call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        error: type[DeviceError],
        timeout_s: float | None = None,
        mark_lost: bool = True,
    ) -> Any:
        """Run one SDK call on the worker with a deadline, translating failures.

        A call past its deadline always marks the camera unavailable; with ``mark_lost`` an
        error meaning "camera gone" does too (enumeration probes other cameras without it).
        """
        worker = self._worker
        if worker is None or self._lost_reason is not None:
            raise DeviceUnavailable(self._lost_reason or "not connected", device=self.label)
        limit = self._call_timeout_s if timeout_s is None else timeout_s
        try:
            return worker.run(what, fn, *args, timeout_s=limit)
        except _CallTimeout as err:
            self._mark_stuck(worker, str(err))
            raise _SdkDeadline(
                f"SDK call {err}; camera marked unavailable", device=self.label
            ) from None
        except Exception as err:
            translated = _translate(self._zw, err, what, error)
            if mark_lost and isinstance(translated, DeviceUnavailable):
                self._mark_lost(str(translated))
            translated.device = self.label
            raise translated from err

    def _mark_stuck(self, worker: _SdkWorker, reason: str) -> None:
        self._stuck.append(worker)
        self._lost_reason = f"SDK call {reason}"
        self._ready = False
        log.error("%s: %s; camera marked unavailable", self.label, reason)

    def _mark_lost(self, reason: str) -> None:
        if self._lost_reason is None:
            self._lost_reason = reason
            log.warning("%s: lost: %s", self.label, reason)
        self._ready = False

    def _get(self, name: str) -> int:
        ctype = self._caps[name]["ControlType"]
        value, _auto = self._call(
            f"get {name}", self._zw._get_control_value, self._cid, ctype, error=DeviceUnavailable
        )
        return int(value)

    def _set(self, name: str, value: int, *, error: type[DeviceError] = SettingRejected) -> None:
        ctype = self._caps[name]["ControlType"]
        self._call(
            f"set {name}={value}",
            self._zw._set_control_value,
            self._cid,
            ctype,
            int(value),
            False,
            error=error,
        )

    def _read_settings(self) -> CaptureSettings:
        return CaptureSettings(
            gain=self._get("Gain"),
            offset=self._get(self._offset_name),
            binning=self._roi[2],
            readout_mode="default",
        )

    def _temperature_c(self) -> float | None:
        if "Temperature" not in self._caps:
            return None
        return self._get("Temperature") / 10.0

    # ----- internals: exposure ------------------------------------------------------------
    def _expose(self, exposure_s: float, dark: bool, timeout_s: float | None) -> Frame:
        info = self._require()
        lo, hi = info.min_exposure_s, info.max_exposure_s
        if not (math.isfinite(exposure_s) and lo <= exposure_s <= hi):
            raise SettingRejected(
                f"exposure {exposure_s} s outside {lo:g}..{hi:g} s", device=self.label
            )
        if timeout_s is not None and not timeout_s > 0:
            raise SettingRejected(f"timeout_s must be > 0, got {timeout_s}", device=self.label)
        zw, cid, clock = self._zw, self._cid, self._clock
        caps = self._caps["Exposure"]
        exp_us = min(max(round(exposure_s * 1e6), int(caps["MinValue"])), int(caps["MaxValue"]))
        self._set("Exposure", exp_us)
        applied_s = self._get("Exposure") / 1e6
        settings = self._read_settings()
        width, height, _ = self._roi
        temp_start = self._temperature_c()
        extra: dict[str, str | int | float | bool] = {"XORGSUBF": 0, "YORGSUBF": 0}
        if "BandWidth" in self._caps:
            extra["USBLIMIT"] = self._get("BandWidth")
        if "HighSpeedMode" in self._caps:
            extra["HISPEED"] = bool(self._get("HighSpeedMode"))

        start_utc = clock.now()
        t0 = time.monotonic()
        self._call("ASIStartExposure", zw._start_exposure, cid, bool(dark), error=ExposureFailed)
        exposure_real = clock.real_seconds(applied_s)
        download_s = info.readout_s * (width * height) / max(info.width * info.height, 1)
        if timeout_s is None:
            budget = 2.0 * exposure_real + _EXPOSURE_MARGIN_S + download_s
        else:
            budget = clock.real_seconds(timeout_s)
        deadline = t0 + budget
        self._wait_for_exposure(applied_s, t0 + exposure_real, deadline, budget)

        buffer = bytearray(width * height * 2)
        download_timeout = max(deadline - time.monotonic(), download_s + 1.0, 1.0)
        self._call(
            "ASIGetDataAfterExp",
            zw._get_data_after_exposure,
            cid,
            buffer,
            error=ExposureFailed,
            timeout_s=max(download_timeout, self._call_timeout_s),
        )
        done = time.monotonic()
        # A fresh buffer per frame: a download abandoned on a stuck worker can never write
        # into an image that was already returned.
        data = np.frombuffer(buffer, dtype=np.dtype("<u2")).reshape(height, width)
        data = data.astype(np.uint16, copy=False)
        temp_end = self._temperature_c()
        cooler = self._cooler_request
        e_per_adu = None
        if self._e_per_adu0 is not None:
            scale = 10 ** (-settings.gain / 200.0) / 2 ** (16 - info.bit_depth)
            e_per_adu = self._e_per_adu0 * scale
        return Frame(
            data=data,
            exposure_s=applied_s,
            dark=dark,
            settings=settings,
            start_utc=start_utc,
            temp_start_c=temp_start,
            temp_end_c=temp_end,
            setpoint_c=cooler[1] if cooler is not None and cooler[0] else None,
            readout_s=max(0.0, done - max(t0 + exposure_real, t0)),
            electrons_per_adu=e_per_adu,
            extra_header=extra,
        )

    def _wait_for_exposure(
        self, exposure_s: float, expected_end: float, deadline: float, budget: float
    ) -> None:
        zw, cid = self._zw, self._cid
        while True:
            if self._abort.is_set():
                self._stop_exposure("abort")
                raise ExposureFailed("exposure aborted", device=self.label)
            status = self._call(
                "ASIGetExpStatus", zw._get_exposure_status, cid, error=ExposureFailed
            )
            if status == _EXP_SUCCESS:
                return
            if status == _EXP_FAILED:
                raise ExposureFailed("camera reported the exposure failed", device=self.label)
            if status != _EXP_WORKING:
                raise ExposureFailed(
                    f"no exposure running (ASI status {status})", device=self.label
                )
            now = time.monotonic()
            if now >= deadline:
                self._stop_exposure("timeout")
                raise ExposureTimeout(
                    f"{exposure_s:g} s exposure not finished after {budget:.1f} s; stopped",
                    device=self.label,
                )
            if now < expected_end:
                wait = min(expected_end - now, _LONG_POLL_S)
            else:
                wait = _FAST_POLL_S if now - expected_end < 1.0 else _SLOW_POLL_S
            self._abort.wait(max(0.0, min(wait, deadline - now)))

    def _stop_exposure(self, reason: str) -> None:
        try:
            self._call("ASIStopExposure", self._zw._stop_exposure, self._cid, error=ExposureFailed)
        except DeviceUnavailable:
            raise
        except DeviceError as err:
            log.warning("%s: stopping the exposure after %s failed: %s", self.label, reason, err)


def open_camera(
    *,
    name: str,
    clock: Clock,
    camera_id: str | None = None,
    model: str | None = None,
    sdk_path: str | None = None,
    usb_bandwidth: int | None = None,
    high_speed: bool | None = None,
    call_timeout_s: float = 10.0,
) -> ZwoCamera:
    """The factory ``capture.devices`` calls for ``driver: zwo``: creates, does not connect
    (no SDK call, never blocks)."""
    return ZwoCamera(
        camera_id=camera_id,
        model=model,
        sdk_path=sdk_path,
        usb_bandwidth=usb_bandwidth,
        high_speed=high_speed,
        call_timeout_s=call_timeout_s,
        clock=clock,
        name=name,
    )


def _check_range(name: str, value: int, lo: int, hi: int, device: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingRejected(f"{name} {value!r} outside {lo}..{hi}", device=device)


# ------------------------------------------------------------------------------------------------
# python -m drivers.zwo


def _iter_lines(devices: list[DeviceListing]) -> Iterator[str]:
    for d in devices:
        yield f"{d.name}\t{d.details}"


def main(argv: list[str] | None = None) -> int:
    """``python -m drivers.zwo list|which [--sdk PATH] [--timeout S]``. Exit 0 ok, 1 failure."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.zwo", description="List ZWO ASI cameras / show the SDK in use."
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


if __name__ == "__main__":
    sys.exit(main())
