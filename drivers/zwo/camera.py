"""The ZWO camera (:class:`drivers.contracts.Camera`): connect by identity, settings, cooler and
exposures with deadlines, on top of the SDK plumbing in :mod:`drivers.zwo._core`."""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from calibd.drivers import bayer
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.zwo._core import _CameraCore
from calibd.drivers.zwo._core import _check_range
from calibd.drivers.zwo._identity import _REGISTRY
from calibd.drivers.zwo._identity import _REGISTRY_LOCK
from calibd.drivers.zwo._identity import _Entry
from calibd.drivers.zwo._worker import _SdkWorker
from calibd.drivers.zwo.sdk import _import_zwoasi
from calibd.drivers.zwo.sdk import load_sdk

log = logging.getLogger(__name__)

_EXP_IDLE, _EXP_WORKING, _EXP_SUCCESS, _EXP_FAILED = 0, 1, 2, 3
# Poll intervals in real seconds: while the exposure runs (also catches a vanished camera), just
# after its expected end, and later.
_LONG_POLL_S = 2.0
_FAST_POLL_S = 0.01
_SLOW_POLL_S = 0.1
_EXPOSURE_MARGIN_S = 0.5  # ZWO: wait 2 x exposure + 500 ms before giving up


class ZwoCamera(_CameraCore):
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
        bayer.refuse_debayered(settings.readout_mode, self.label)
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
                # Once per camera: a ramped set-point moves in small steps, each one rounded.
                report = log.debug if self._rounding_reported else log.warning
                report("%s: set-point %.2f °C -> %d °C (ZWO set-points are whole degrees)",
                       self.label, setpoint_c, target)
                self._rounding_reported = True
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
        with self._guard.exposing(self.label, stop=self._stop_exposure):
            return self._expose(exposure_s, dark, timeout_s)

    def abort(self) -> None:
        """Ask a running :meth:`expose` to stop the exposure; no-op when idle. Never raises."""
        self._guard.request_abort()

    # ----- internals: connect -------------------------------------------------------------
    def _restore(self) -> None:
        """After a reconnect, put back what the caller had configured (a re-powered camera comes
        back with its defaults and the cooler off)."""
        if self._requested is not None:
            self.configure(self._requested)
        if self._cooler_request is not None:
            on, setpoint = self._cooler_request
            self.set_cooler(on, setpoint)


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
        pattern = self._frame_pattern(settings.binning)
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
            bayer_pattern=pattern,
        )

    def _frame_pattern(self, binning: int) -> str | None:
        """BAYERPAT of the next image: the SDK's pattern (the ROI starts at 0,0, rows unflipped)
        at 1x1 and, binned, while ASI_MONO_BIN reads back 0 (colour binning keeps the mosaic); None
        for a mono camera, or a binned image the camera may have summed into mono."""
        pattern = self.info.bayer_pattern
        if pattern is None or binning == 1:
            return pattern
        if self._mono_bin is None or self._get(self._mono_bin) != 0:
            return None
        return pattern

    def _wait_for_exposure(
        self, exposure_s: float, expected_end: float, deadline: float, budget: float
    ) -> None:
        """Poll ASIGetExpStatus until the exposure has succeeded; after each poll that finds it
        still running, an abort or ``deadline`` (``time.monotonic`` seconds) ends the wait through
        the guard, which stops the exposure. Raises ExposureFailed, ExposureTimeout,
        DeviceUnavailable."""
        zw, cid = self._zw, self._cid
        timed_out = f"{exposure_s:g} s exposure not finished after {budget:.1f} s; stopped"
        while True:
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
            self._guard.end_wait_if_over(now, deadline, timed_out)
            if now < expected_end:
                wait = min(expected_end - now, _LONG_POLL_S)
            else:
                wait = _FAST_POLL_S if now - expected_end < 1.0 else _SLOW_POLL_S
            self._guard.abort.wait(max(0.0, min(wait, deadline - now)))

    def _stop_exposure(self, reason: str) -> None:
        try:
            self._call("ASIStopExposure", self._zw._stop_exposure, self._cid, error=ExposureFailed)
        except DeviceUnavailable:
            raise
        except DeviceError as err:
            log.warning("%s: stopping the exposure (%s) failed: %s", self.label, reason, err)


#: The factory ``capture.devices`` calls for ``driver: zwo`` (with ``name``, ``clock`` and the
#: configured options): the class itself, which creates without connecting (no SDK call, never
#: blocks).
open_camera = ZwoCamera
