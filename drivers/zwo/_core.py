"""The camera's machinery under :class:`~drivers.zwo.camera.ZwoCamera`: its SDK worker and
handle, every SDK call with a deadline and error translation, and finding, opening and describing
the camera at connect. No contract methods here (they are in :mod:`drivers.zwo.camera`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.exposure_guard import ExposureGuard
from calibd.drivers.zwo._identity import _REGISTRY
from calibd.drivers.zwo._identity import _REGISTRY_LOCK
from calibd.drivers.zwo._identity import _Identity
from calibd.drivers.zwo._identity import _model_matches
from calibd.drivers.zwo._identity import _read_identity
from calibd.drivers.zwo._identity import _registry_get
from calibd.drivers.zwo._identity import _translate
from calibd.drivers.zwo._identity import describe_camera
from calibd.drivers.zwo._worker import _CallTimeout
from calibd.drivers.zwo._worker import _SdkDeadline
from calibd.drivers.zwo._worker import _SdkWorker

log = logging.getLogger(__name__)

_IMG_RAW16 = 2
_ASI_MONO_BIN = 18  # ASI_CONTROL_TYPE
_CLOSE_TIMEOUT_S = 2.0


def _check_range(name: str, value: int, lo: int, hi: int, device: str) -> None:
    """Raise SettingRejected unless ``value`` is an int in ``lo..hi`` (inclusive)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingRejected(f"{name} {value!r} outside {lo}..{hi}", device=device)


class _CameraCore:
    """State and SDK plumbing of one ZWO camera (see :class:`~drivers.zwo.camera.ZwoCamera` for
    the arguments). Every SDK call runs on the camera's worker with a deadline (``_call``)."""

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
        self._mono_bin: str | None = None  # name of the ASI_MONO_BIN control, if offered
        self._offset_name = "Offset"
        self._e_per_adu0: float | None = None
        self._roi = (0, 0, 1)  # width, height, binning as read back
        self._settings: CaptureSettings | None = None  # as read back
        self._requested: CaptureSettings | None = None  # last successful configure() request
        self._cooler_request: tuple[bool, float | None] | None = None
        self._ready = False
        self._lost_reason: str | None = None
        self._guard = ExposureGuard()
        self._rounding_reported = False  # the whole-degree set-point warning was logged

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
        # ASI_MONO_BIN, found by type: the SDK names it "Mono bin" (with a space).
        self._mono_bin = next((name for name, c in caps.items()
                               if int(c["ControlType"]) == _ASI_MONO_BIN), None)
        if prop.get("IsColorCam") and self._mono_bin is not None:
            # Colour binning: a binned image stays a Bayer mosaic (mono bin on would add the
            # four colours into one value and the frame would carry no pattern).
            self._set(self._mono_bin, 0, error=DeviceUnavailable)
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
        self._info, self._e_per_adu0 = describe_camera(prop, identity, caps,
                                                       self._offset_name)
        self._apply_roi(1)
        self._settings = self._read_settings()

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
