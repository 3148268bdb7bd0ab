"""INDI camera (``INDI::CCD`` drivers): configuration, cooler, exposures as FITS BLOBs."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from typing import Unpack

from calibd.drivers import bayer
from calibd.drivers.clock import Clock
from calibd.drivers.clock import RealClock
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame
from calibd.drivers.contracts import ImageArray
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.exposure_guard import ExposureGuard
from calibd.drivers.indi import _readout
from calibd.drivers.indi._conn import BlobRecord
from calibd.drivers.indi._conn import PropSnapshot
from calibd.drivers.indi._conn import Session
from calibd.drivers.indi._device import Endpoint
from calibd.drivers.indi._device import IndiDevice
from calibd.drivers.indi._fits import decode_fits
from calibd.drivers.indi._fits import header_time
from calibd.drivers.indi._raw import align_msb
from calibd.drivers.indi._state import ConnState
from calibd.drivers.indi.families import GENERIC_GAIN
from calibd.drivers.indi.families import GENERIC_OFFSET
from calibd.drivers.indi.families import GENERIC_POWER
from calibd.drivers.indi.families import Family
from calibd.drivers.indi.families import Where
from calibd.drivers.indi.families import detect

log = logging.getLogger(__name__)

DOWNLOAD_MARGIN_S = 15.0  # added to every exposure deadline for read-out and transfer
IDLE_GRACE_S = 2.0  # an exposure that turns Idle without an image has been aborted elsewhere
_FRAME_TYPES = ("FRAME_LIGHT", "FRAME_BIAS", "FRAME_DARK", "FRAME_FLAT")


@dataclass(frozen=True)
class _Decoded:
    data: ImageArray
    header: dict[str, Any]


class IndiCamera(IndiDevice):
    """An INDI CCD/CMOS camera (``CCD_*`` standard properties), satisfying
    :class:`drivers.contracts.Camera`.

    ``IndiCamera(host="127.0.0.1", port=7624, device="CCD Simulator", socket_path=None,
    connect_timeout_s=10.0, polling_ms=None)``. Exposures use FRAME_BIAS when ``dark`` and the
    exposure is the device minimum (``info.min_exposure_s``), FRAME_DARK for other darks and
    FRAME_FLAT otherwise; images arrive as FITS BLOBs on ``CCD1`` (BLOB mode B_ALSO, compression
    off, upload to client). ``connect()`` after any failure re-opens the server connection,
    reconnects the device and re-applies BLOB mode, polling period, the last ``configure()`` and
    the last ``set_cooler()``.

    The driver family (ZWO, QHY, Touptek, Player One, the CCD simulator; see
    :mod:`drivers.indi.families`) is detected at connect from the properties the device defines;
    it says where gain, offset, read-out mode, cooler power, bit depth and the camera model are,
    and which capture format is 16-bit raw (selected at connect).
    """

    _required = ("CCD_EXPOSURE", "CCD_INFO", "CCD1", "CCD_FRAME_TYPE")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        self.clock: Clock = clock or RealClock()
        self._info: CameraInfo | None = None
        self._settings: CaptureSettings | None = None
        self._cooler: tuple[bool, float | None] | None = None
        self._guard = ExposureGuard()  # one exposure at a time; abort() wakes its wait
        self.last_header: dict[str, Any] = {}  # FITS header of the last image, as sent
        self.family: Family | None = None  # detected at connect

    # ------------------------------------------------------------------ connection

    @property
    def info(self) -> CameraInfo:
        """Capabilities read from the device at connect. Raises DeviceUnavailable before."""
        if self._info is None:
            raise DeviceUnavailable("not connected", device=self.device)
        return self._info

    def connect(self) -> None:
        """Connect (idempotent); after a failure, reconnect and re-apply everything. Blocks up
        to a few ``connect_timeout_s``. Raises DeviceUnavailable, SettingRejected (when a
        remembered setting is now refused)."""
        if self.connected and self._info is not None:
            return
        self._connect_device()
        self._settle()
        conn = self._require()
        conn.enable_blobs(self.device, "CCD1")
        self._ensure_switch("UPLOAD_MODE", "UPLOAD_CLIENT")
        self._ensure_switch("CCD_COMPRESSION", "INDI_DISABLED")
        self._ensure_switch("CCD_TRANSFER_FORMAT", "FORMAT_FITS")
        family = self.family = detect(self._defines)
        log.info("%s: INDI driver family %s", self.device, family.name)
        capture = self._prop("CCD_CAPTURE_FORMAT")
        raw16 = next((e for e in family.raw16 if capture and e in capture.values), None)
        if raw16 is not None:
            self._ensure_switch("CCD_CAPTURE_FORMAT", raw16)
        self._info = self._read_info()
        if self._settings is not None:
            log.info("%s: re-applying %s", self.device, self._settings)
            self.configure(self._settings)
        if self._cooler is not None:
            log.info("%s: re-applying cooler %s", self.device, self._cooler)
            self.set_cooler(*self._cooler)

    def _settle(self, quiet_s: float = 0.3, max_s: float = 3.0) -> None:
        """Wait until the device stops defining new properties (a driver defines them in a
        burst after CONNECT; gain/offset may come last)."""
        conn = self._require()
        deadline = time.monotonic() + max_s
        last = conn.read(lambda st: st.definitions)
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = conn.read(lambda st: st.definitions)
            if now == last:
                return
            last = now

    def _ensure_switch(self, name: str, element: str) -> None:
        snap = self._prop(name)
        if snap is None or element not in snap.values or snap.is_on(element):
            return
        self._set_switch(name, element)

    def _defines(self, vector: str, element: str | None) -> bool:
        snap = self._prop(vector)
        return snap is not None and (element is None or element in snap.values)

    def _find(self, candidates: tuple[Where, ...]) -> Where | None:
        for prop, element in candidates:
            snap = self._prop(prop)
            if snap is not None and snap.kind == "number" and element in snap.values:
                return prop, element
        return None

    def _where(self, what: str) -> Where | None:
        """Where the detected family keeps ``gain``/``offset``/``power`` (generic fallbacks
        for a family without one)."""
        family = self.family
        own: Where | None = None
        if family is not None:
            own = {"gain": family.gain, "offset": family.offset,
                   "power": family.cooler_power}[what]
        generic = {"gain": GENERIC_GAIN, "offset": GENERIC_OFFSET, "power": GENERIC_POWER}[what]
        return self._find((own,) if own else generic)

    def _model(self) -> str:
        family = self.family
        spec = family.model if family else ("driver",)
        if spec[0] == "text":
            snap = self._prop(spec[1])
            text = str(snap.values.get(spec[2], "")).strip() if snap else ""
            if text:
                return text[:68]
        if spec[0] == "prefix" and self.device.startswith(spec[1]):
            model = self.device[len(spec[1]):].strip()
            if len(spec) > 2 and spec[2] in model:
                model = model.rsplit(spec[2], 1)[0]
            return model[:68] or self.device
        driver = self._prop("DRIVER_INFO")
        return str(driver.values.get("DRIVER_NAME", self.device))[:68] if driver else self.device

    def _bit_depth(self, ccd: PropSnapshot) -> int:
        family = self.family
        where = family.bit_depth if family else None
        snap = self._prop(where[0]) if where else None
        if where and snap is not None and where[1] in snap.values:
            bits = round(snap.number(where[1]))
        elif "CCD_BITSPERPIXEL" in ccd.values:
            bits = round(ccd.number("CCD_BITSPERPIXEL"))
        else:
            bits = 16
        return bits if 8 <= bits <= 16 else 16

    def _readout_snap(self) -> PropSnapshot | None:
        spec = self.family.readout if self.family else None
        return self._prop(spec.vector) if spec else None

    def _read_info(self) -> CameraInfo:
        ccd = self._prop("CCD_INFO")
        conn = self._require()
        if ccd is None or ccd.number("CCD_MAX_X") <= 0:
            snap = conn.wait_until(
                lambda st: _positive(st.prop(self.device, "CCD_INFO")), self.connect_timeout_s
            )
            if snap is None:
                raise DeviceUnavailable("CCD_INFO reports no sensor size", device=self.device)
            ccd = snap
        exp = self._prop("CCD_EXPOSURE")
        assert exp is not None
        exp_min, exp_max, _ = exp.limits.get("CCD_EXPOSURE_VALUE", (0.0, 3600.0, 0.0))
        if exp_min <= 0:
            log.warning("%s: CCD_EXPOSURE has no minimum; assuming 1 ms", self.device)
            exp_min = 0.001
        binning = self._prop("CCD_BINNING")
        max_bin = (
            int(binning.limits["HOR_BIN"][1]) if binning and "HOR_BIN" in binning.limits else 1
        )
        gain = self._where("gain")
        offset = self._where("offset")
        temp = self._prop("CCD_TEMPERATURE")
        gain_range = self._range(gain)
        offset_range = self._range(offset)
        t_lo, t_hi, _ = temp.limits.get("CCD_TEMPERATURE_VALUE", (0, 0, 0)) if temp else (0, 0, 0)
        pattern = _cfa_pattern(self._prop("CCD_CFA"))
        readout = self.family.readout if self.family else None
        modes = _readout.available(readout, self._readout_snap())
        now = _readout.current(readout, self._readout_snap())
        if now in modes:  # the device's current mode is what a plan without a mode gets
            modes = (now, *(m for m in modes if m != now))
        return CameraInfo(
            model=self._model(),
            camera_id=f"indi:{self.device}",
            width=int(ccd.number("CCD_MAX_X")),
            height=int(ccd.number("CCD_MAX_Y")),
            bit_depth=self._bit_depth(ccd),
            pixel_size_um=float(ccd.values.get("CCD_PIXEL_SIZE", 0.0)),
            gain_min=gain_range[0],
            gain_max=gain_range[1],
            offset_min=offset_range[0],
            offset_max=offset_range[1],
            min_exposure_s=float(exp_min),
            max_exposure_s=float(exp_max if exp_max > exp_min else 3600.0),
            has_cooler=temp is not None and temp.writable,
            binnings=tuple(range(1, max(1, max_bin) + 1)),
            readout_modes=modes,
            bayer_pattern=pattern,
            min_setpoint_c=float(t_lo) if t_hi > t_lo else None,
            max_setpoint_c=float(t_hi) if t_hi > t_lo else None,
        )

    def _range(self, where: tuple[str, str] | None) -> tuple[int, int]:
        if where is None:
            return 0, 0
        snap = self._prop(where[0])
        assert snap is not None
        lo, hi, _ = snap.limits[where[1]]
        return math.ceil(lo), math.floor(hi)

    # ------------------------------------------------------------------ settings

    def configure(self, settings: CaptureSettings) -> CaptureSettings:
        """Apply binning (full frame at that binning), gain and offset; returns the values read
        back from the device. Blocks until the device answers each (``set_timeout_s`` each).
        Raises SettingRejected (out of range, no such control, refused), DeviceUnavailable."""
        info = self.info
        self._require()
        bayer.refuse_debayered(settings.readout_mode, self.device)
        if settings.readout_mode not in (*info.readout_modes, "default"):
            raise SettingRejected(
                f"read-out mode {settings.readout_mode!r} not offered "
                f"(available: {', '.join(info.readout_modes)})",
                device=self.device,
            )
        if settings.binning not in info.binnings:
            raise SettingRejected(
                f"binning {settings.binning} not offered (available: {info.binnings})",
                device=self.device,
            )
        for label, value, lo, hi in (
            ("gain", settings.gain, info.gain_min, info.gain_max),
            ("offset", settings.offset, info.offset_min, info.offset_max),
        ):
            if not lo <= value <= hi:
                raise SettingRejected(
                    f"{label} {value} is outside the device's range [{lo}, {hi}]",
                    device=self.device,
                )
        if self._prop("CCD_BINNING") is not None:
            self._set_number(
                "CCD_BINNING", {"HOR_BIN": settings.binning, "VER_BIN": settings.binning}
            )
        if self._prop("CCD_FRAME") is not None:
            self._set_number(
                "CCD_FRAME", {"X": 0, "Y": 0, "WIDTH": info.width, "HEIGHT": info.height}
            )
        gain = self._where("gain")
        if gain is not None:
            self._set_number(gain[0], {gain[1]: settings.gain})
        offset = self._where("offset")
        if offset is not None:
            self._set_number(offset[0], {offset[1]: settings.offset})
        self._apply_readout(settings.readout_mode)
        self._settings = settings
        return self._read_back()

    def _apply_readout(self, mode: str) -> None:
        spec = self.family.readout if self.family else None
        if spec is None or mode == "default":
            return
        if mode == _readout.current(spec, self._readout_snap()):
            return
        if spec.kind == "switch":
            self._set_switch(spec.vector, mode)
        else:
            self._set_number(spec.vector, {spec.element: _readout.number_value(spec, mode)})

    def _read_back(self) -> CaptureSettings:
        binning = self._prop("CCD_BINNING")
        readout = self.family.readout if self.family else None
        return CaptureSettings(
            gain=self._int_value(self._where("gain")),
            offset=self._int_value(self._where("offset")),
            binning=int(binning.number("HOR_BIN")) if binning else 1,
            readout_mode=_readout.current(readout, self._readout_snap()),
        )

    def _int_value(self, where: tuple[str, str] | None) -> int:
        if where is None:
            return 0
        snap = self._prop(where[0])
        return round(snap.number(where[1])) if snap else 0

    # ------------------------------------------------------------------ cooler

    def cooler_state(self) -> CoolerState:
        """The sensor temperature as last reported (no I/O). ``setpoint_c`` is the last
        requested set-point (INDI does not report the target); ``power_pct`` from
        CCD_COOLER_POWER where present. Raises NotSupported, DeviceUnavailable."""
        self._require()
        temp = self._prop("CCD_TEMPERATURE")
        if temp is None:
            raise NotSupported("device reports no CCD_TEMPERATURE", device=self.device)
        cooler = self._prop("CCD_COOLER")
        requested_on, setpoint = self._cooler or (False, None)
        readable = cooler is not None and cooler.readable
        on = cooler.is_on("COOLER_ON") if readable and cooler is not None else requested_on
        where = self._where("power")
        power = self._prop(where[0]) if where else None
        power_pct = power.number(where[1]) if power is not None and where else None
        return CoolerState(
            temperature_c=temp.number("CCD_TEMPERATURE_VALUE"),
            on=on,
            setpoint_c=setpoint,
            power_pct=power_pct,
        )

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        """Send the set-point (CCD_TEMPERATURE) and switch CCD_COOLER; does not wait for the
        temperature, only for the device to accept (``set_timeout_s``). Raises SettingRejected
        (out of range, refused), NotSupported (no settable temperature), DeviceUnavailable."""
        self._require()
        temp = self._prop("CCD_TEMPERATURE")
        if temp is None or not temp.writable:
            raise NotSupported("device has no settable CCD_TEMPERATURE", device=self.device)
        previous = self._cooler[1] if self._cooler else None
        if on and setpoint_c is not None:
            self._set_number(
                "CCD_TEMPERATURE", {"CCD_TEMPERATURE_VALUE": setpoint_c}, accept_busy=True
            )
        cooler = self._prop("CCD_COOLER")
        if cooler is not None:
            want = "COOLER_ON" if on else "COOLER_OFF"
            # A write-only switch (ZWO, Touptek, Player One) shows what was sent, not the
            # cooler: always send it.
            if not cooler.readable or not cooler.is_on(want):
                self._set_switch("CCD_COOLER", want, accept_busy=True)
        elif not on:
            log.warning("%s: no CCD_COOLER switch; the cooler keeps regulating", self.device)
        self._cooler = (on, setpoint_c if setpoint_c is not None else previous)

    # ------------------------------------------------------------------ exposures

    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        """Take one exposure and return it once the image BLOB has arrived and been decoded.

        Blocks about exposure + read-out, at most ``timeout_s`` real seconds (default 2 x
        exposure + 15 s + polling). Raises SettingRejected (outside [min, max] exposure),
        ExposureFailed (at once if another exposure of this camera is running; device Alert,
        aborted, bad image), ExposureTimeout (deadline; the exposure is aborted),
        DeviceUnavailable (server or driver lost)."""
        info = self.info
        conn = self._require()
        if not math.isfinite(exposure_s) or exposure_s <= 0:
            raise SettingRejected(f"exposure {exposure_s} s must be positive", device=self.device)
        if exposure_s < info.min_exposure_s * (1 - 1e-9):
            raise SettingRejected(
                f"exposure {exposure_s:g} s is shorter than the device minimum "
                f"{info.min_exposure_s:g} s",
                device=self.device,
            )
        if exposure_s > info.max_exposure_s:
            raise SettingRejected(
                f"exposure {exposure_s:g} s is longer than the device maximum "
                f"{info.max_exposure_s:g} s",
                device=self.device,
            )
        bias = dark and exposure_s <= info.min_exposure_s * (1 + 1e-6)
        frame_type = "FRAME_BIAS" if bias else ("FRAME_DARK" if dark else "FRAME_FLAT")
        polling = self._prop("POLLING_PERIOD")
        poll_s = polling.number("PERIOD_MS") / 1000.0 if polling else 1.0
        timeout = (
            timeout_s if timeout_s is not None else 2 * exposure_s + DOWNLOAD_MARGIN_S + 3 * poll_s
        )
        with self._guard.exposing(self.device):  # from here on abort() takes effect
            self._ensure_switch("CCD_FRAME_TYPE", frame_type)
            temp = self._prop("CCD_TEMPERATURE")
            temp_start = temp.number("CCD_TEMPERATURE_VALUE") if temp else None
            settings = self._read_back()
            session = self._session
            conn.read(lambda st: st.blobs.pop((self.device, "CCD1"), None))
            before = conn.version()
            start_utc = self.clock.now()
            started = time.monotonic()
            if self._guard.abort.is_set():
                raise ExposureFailed("exposure aborted before it started", device=self.device)
            conn.send_number(self.device, "CCD_EXPOSURE", {"CCD_EXPOSURE_VALUE": exposure_s})
            record, decoded = self._await_image(
                exposure_s=exposure_s,
                binning=settings.binning,
                before=before,
                started=started,
                deadline=started + timeout,
                session=session,
            )
        header = decoded.header
        self.last_header = header
        temp = self._prop("CCD_TEMPERATURE")
        exptime = header.get("EXPTIME")
        got_gain = header.get("GAIN")
        got_offset = header.get("OFFSET")
        got_bin = header.get("XBINNING")
        applied = CaptureSettings(
            gain=round(float(got_gain)) if isinstance(got_gain, int | float) else settings.gain,
            offset=(round(float(got_offset)) if isinstance(got_offset, int | float)
                    else settings.offset),
            binning=int(got_bin) if isinstance(got_bin, int) else settings.binning,
            readout_mode=settings.readout_mode,
        )
        data, shift = align_msb(decoded.data, self.info.bit_depth)
        if shift:
            log.debug("%s: native %d-bit data shifted left by %d", self.device,
                      self.info.bit_depth, shift)
        return Frame(
            data=data,
            exposure_s=float(exptime) if isinstance(exptime, int | float) else exposure_s,
            dark=dark,
            settings=applied,
            start_utc=header_time(header.get("DATE-OBS")) or start_utc,
            temp_start_c=temp_start,
            temp_end_c=temp.number("CCD_TEMPERATURE_VALUE") if temp else None,
            setpoint_c=self._cooler[1] if self._cooler and self._cooler[0] else None,
            readout_s=max(0.0, record.received_monotonic - started - exposure_s),
            electrons_per_adu=_egain(header, shift),
            extra_header={"INDIDEV": self.device, "INDIFRAM": frame_type.removeprefix("FRAME_")},
            bayer_pattern=_fits_pattern(header),
        )

    def _await_image(
        self,
        *,
        exposure_s: float,
        binning: int,
        before: int,
        started: float,
        deadline: float,
        session: Session | None,
    ) -> tuple[BlobRecord, _Decoded]:
        conn = self._require()
        expected_shape = (self.info.height // binning, self.info.width // binning)
        is_bias = exposure_s <= self.info.min_exposure_s * (1 + 1e-6)
        idle_since: float | None = None

        # Idle after a Busy reported since the request ends the wait (after IDLE_GRACE_S without
        # Busy) whether or not this wait saw the Busy: an exposure stopped at once (aborted by
        # another client) reports Busy, then Idle, and both may arrive before the wait looks.
        # An Idle with no Busy since the request is an earlier abort's answer arriving late.
        def check(st: ConnState) -> tuple[str, Any] | None:
            nonlocal idle_since
            if self._guard.abort.is_set():
                return ("aborted", None)
            record = st.take_blob(self.device, "CCD1", before)
            if record is not None:
                return ("image", record)
            snap = st.prop(self.device, "CCD_EXPOSURE")
            if snap is not None and snap.version > before:
                if snap.alerted_since(before):
                    return ("alert", snap)
                if snap.state == "Busy":
                    idle_since = None
                elif snap.state == "Idle" and snap.busy_since(before):
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > IDLE_GRACE_S:
                        return ("idle", None)
            return None

        while True:
            remaining = deadline - time.monotonic()
            outcome = None
            if remaining > 0:
                outcome = conn.wait_until(
                    check, min(remaining, IDLE_GRACE_S), device=self.device, session=session
                )
            if outcome is None:
                if time.monotonic() < deadline:
                    continue
                self._send_abort("CCD_ABORT_EXPOSURE")
                raise ExposureTimeout(
                    f"no image {deadline - started:.1f} s after starting a {exposure_s:g} s "
                    "exposure; aborted",
                    device=self.device,
                )
            kind, payload = outcome
            if kind == "aborted":
                raise ExposureFailed("exposure aborted", device=self.device)
            if kind == "alert":
                detail = self._alert_reason(payload, before, fallback="CCD_EXPOSURE state Alert")
                raise ExposureFailed(f"exposure failed: {detail}", device=self.device)
            if kind == "idle":
                raise ExposureFailed("exposure ended without an image", device=self.device)
            record = payload
            data, header = decode_fits(record.data, record.fmt)
            exptime = header.get("EXPTIME")
            stale = (
                isinstance(exptime, int | float)
                and not is_bias
                and abs(float(exptime) - exposure_s) > max(0.01, 0.01 * exposure_s)
            )
            if stale:
                log.warning(
                    "%s: discarding a stale image (EXPTIME %s s, expected %s s)",
                    self.device,
                    exptime,
                    exposure_s,
                )
                continue
            if data.shape != expected_shape:
                raise ExposureFailed(
                    f"image is {data.shape[1]}x{data.shape[0]}, expected "
                    f"{expected_shape[1]}x{expected_shape[0]}",
                    device=self.device,
                )
            return record, _Decoded(data, header)

    def abort(self) -> None:
        """Abort a running exposure from any thread (CCD_ABORT_EXPOSURE) and make the waiting
        :meth:`expose` raise ExposureFailed at once; a no-op when idle. Never raises."""
        try:
            if not self._guard.request_abort():
                return
            self._send_abort("CCD_ABORT_EXPOSURE")
            if self._conn is not None:
                self._conn.notify()
        except Exception as err:
            log.debug("%s: abort: %r", self.device, err)


def _egain(header: dict[str, Any], shift: int) -> float | None:
    """e-/ADU from the driver's own EGAIN card, on calibd's 16-bit scale (None without one:
    none of the four common drivers writes it)."""
    egain = header.get("EGAIN")
    if not isinstance(egain, int | float) or not math.isfinite(egain) or egain <= 0:
        return None
    return float(egain) / (1 << shift)


def _offset(value: Any) -> int:
    """A Bayer offset from a FITS card or a CCD_CFA text element (0 when absent or not a small
    integer)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        return 0
    return number if 0 <= number < 16 else 0


def _fits_pattern(header: dict[str, Any]) -> str | None:
    """The Bayer pattern of *this* image, from the FITS the driver sent: drivers switch
    CCD_HAS_BAYER per frame (the ZWO driver clears it for RGB24/Y8/mono-bin), so the FITS is the
    truth, not CCD_CFA. BAYERPAT describes the top-left of the image as displayed (Siril's
    reading, ROWORDER applied: decode_fits has turned the rows top-down), shifted by
    XBAYROFF/YBAYROFF; the result needs no offsets. None without a valid BAYERPAT."""
    pattern = bayer.normalize(header.get("BAYERPAT"))
    if pattern is None:
        return None
    return bayer.shifted(pattern, _offset(header.get("XBAYROFF")), _offset(header.get("YBAYROFF")))


def _cfa_pattern(cfa: PropSnapshot | None) -> str | None:
    """The sensor's pattern from CCD_CFA (CFA_TYPE shifted by CFA_OFFSET_X/Y), None without
    one (mono, or the driver's bayer capability is off)."""
    if cfa is None:
        return None
    pattern = bayer.normalize(cfa.values.get("CFA_TYPE"))
    if pattern is None:
        return None
    return bayer.shifted(pattern, _offset(cfa.values.get("CFA_OFFSET_X")),
                         _offset(cfa.values.get("CFA_OFFSET_Y")))


def _positive(snap: PropSnapshot | None) -> PropSnapshot | None:
    if snap is None or "CCD_MAX_X" not in snap.values or snap.number("CCD_MAX_X") <= 0:
        return None
    return snap


def open_camera(*, name: str, clock: Clock, **endpoint: Unpack[Endpoint]) -> IndiCamera:
    """The factory ``capture.devices`` calls for ``driver: indi``: creates, does not connect
    (never blocks, no PyIndi import). ``name`` is calibd's camera name (for logs only)."""
    log.debug("camera %s: INDI device %r", name, endpoint["device"])
    return IndiCamera(clock=clock, **endpoint)
