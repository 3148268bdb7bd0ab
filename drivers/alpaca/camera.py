"""ASCOM Alpaca camera driver (:class:`drivers.contracts.Camera`).

Property and method calls go through alpyca (with our timeouts, see :mod:`drivers.alpaca._base`);
the image download is ours (:mod:`drivers.alpaca.imagebytes`).
"""

from __future__ import annotations

import enum
import logging
import math
import time
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Literal
from typing import Unpack

from calibd.drivers import bayer
from calibd.drivers.alpaca._base import AlpacaDevice
from calibd.drivers.alpaca._base import Endpoint
from calibd.drivers.alpaca._base import Quirk
from calibd.drivers.alpaca._base import positive_seconds
from calibd.drivers.alpaca.imagebytes import RANK3_REFUSED
from calibd.drivers.alpaca.imagebytes import ImageDownload
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame
from calibd.drivers.contracts import ImageArray
from calibd.drivers.errors import DeviceError
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.exposure_guard import ExposureGuard

logger = logging.getLogger(__name__)

LevelMode = Literal["range", "list", "none"]

#: Extra clock seconds an exposure that the server did not really abort may need to produce its
#: (discarded) image after its nominal end.
_UNSTOPPED_GRACE_S = 3.0
#: ImageReady poll period right after the nominal end of an exposure, and later.
_FAST_POLL_S = 0.05
_SLOW_POLL_S = 0.25
#: How often a running exposure is checked for a dead server / error state.
_ALIVE_CHECK_S = 1.0


class CameraStates(enum.IntEnum):
    """ASCOM CameraState."""

    IDLE = 0
    WAITING = 1
    EXPOSING = 2
    READING = 3
    DOWNLOAD = 4
    ERROR = 5


def bayer_pattern(sensor_type: int | None, offset_x: int, offset_y: int) -> str | None:
    """FITS BAYERPAT for an ASCOM SensorType and BayerOffsetX/Y: the 2x2 colours at sensor pixel
    (0, 0), row by row (``RGGB`` with offsets (1, 0) -> ``GRBG``). None for mono and colour."""
    if sensor_type == 2:  # RGGB family: the phase is in the offsets
        return bayer.shifted("RGGB", offset_x, offset_y)
    return {3: "CMYG", 4: "CMYG2", 5: "LRGB"}.get(sensor_type or 0)


def frame_pattern(sensor: str | None, start_x: int, start_y: int, binning: int) -> str | None:
    """BAYERPAT of an image read from subframe origin (``start_x``, ``start_y``) at ``binning``:
    the sensor's pattern shifted by the origin's parity (ICameraV3: BayerOffsetX/Y "does not
    change to reflect subframe settings"). None for a mono sensor, a non-RGB matrix (CMYG, LRGB:
    calibd splits RGB Bayer mosaics only) and any binned image: ASCOM does not say how a colour
    sensor bins (by colour or into a mono sum), so a binned image is not taken for a mosaic."""
    if binning != 1 or bayer.normalize(sensor) is None:
        return None
    assert sensor is not None
    return bayer.shifted(sensor, start_x, start_y)


def parse_alpaca_time(value: str) -> datetime:
    """Parse LastExposureStartTime (``CCYY-MM-DDThh:mm:ss[.sss...]``, UTC by the specification;
    some servers append ``Z`` or ``+00:00``, .NET sends 7 fractional digits). Raises ValueError."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, sep, frac = text.partition(".")
    if sep:
        digits = "".join(ch for ch in frac if ch.isdigit())
        zone = frac[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class AlpacaCamera(AlpacaDevice):
    """A camera behind an Alpaca server.

    ``timeout_s``: real seconds allowed per HTTP request. ``download_timeout_s``: **real** seconds
    allowed for one image download (None: ``max(10, 4 x info.readout_s)``), like ``timeout_s`` a
    network deadline, so a scaled test clock does not shrink it; the download never outlives the
    deadline of :meth:`expose` either (clock seconds, converted with ``clock.real_seconds``).
    Exposure times and :meth:`expose`'s ``timeout_s`` are clock seconds. ``client_id``: the
    Alpaca ClientID to send
    (None: alpyca's per-process random id). ``quirks``: see
    :class:`drivers.alpaca._base.AlpacaDevice`.

    Gain and offset are numbers in ``GainMin..GainMax`` when the device takes values, or indices
    into ``CameraInfo.gain_names`` when it offers a named ``Gains`` list (same for offsets).
    Read-out modes are the device's ``ReadoutModes`` names. Binning is symmetric, and configure()
    resets the subframe to the full binned frame.

    After a reconnect (:meth:`connect` following a lost connection or a server restart) the last
    settings and cooler request are applied again before connect() returns.
    """

    _ascom_type = "Camera"

    def __init__(
        self,
        *,
        download_timeout_s: float | None = None,
        **endpoint: Unpack[Endpoint],
    ) -> None:
        super().__init__(**endpoint)
        if download_timeout_s is not None:
            download_timeout_s = positive_seconds("download_timeout_s", download_timeout_s)
        self.download_timeout_s = download_timeout_s
        self._info: CameraInfo | None = None
        self._gain_mode: LevelMode = "none"
        self._offset_mode: LevelMode = "none"
        self._has_readout_modes = False
        self._adu_scale = 1
        self._can_abort = False
        self._can_stop = False
        self._can_cooler_power = False
        self._settings: CaptureSettings | None = None
        self._frame_shape: tuple[int, int] | None = None
        self._frame_bayer: str | None = None  # the BAYERPAT of the current subframe/binning
        self._sensor_type: int | None = None
        self._wanted_settings: CaptureSettings | None = None
        self._wanted_cooler: tuple[bool, float | None] | None = None
        self._guard = ExposureGuard()  # its lock also guards the fields below
        self._running: tuple[float, float] | None = None  # (clock start, exposure_s)
        self._abort_sent = False  # AbortExposure/StopExposure already sent for _running
        self._download: ImageDownload | None = None
        self._unstopped_until: float | None = None  # clock.monotonic()
        self._transaction = 0  # ClientTransactionID of our own image downloads

    # -- capabilities ----------------------------------------------------------------------------

    @property
    def info(self) -> CameraInfo:
        """Capabilities read at connect. Raises DeviceUnavailable before the first connect()."""
        if self._info is None:
            raise DeviceUnavailable(
                "camera info is read at connect(); not connected yet", device=self.label
            )
        return self._info

    def _probe(self, name: str) -> Any | None:
        """Read an optional property: None when the device answers with any Alpaca error.
        Transport failures still raise DeviceUnavailable."""
        dev = self._dev

        def read() -> Any:
            try:
                return getattr(dev, name)
            except Exception as err:
                if type(err).__module__.startswith("alpaca") and hasattr(err, "number"):
                    logger.debug("%s: %s not available: %s", self.label, name, err)
                    return None
                raise

        return self._call(read, what=name)

    def _after_connect(self) -> None:
        with self._guard.lock:
            self._unstopped_until = None
        self._info = self._read_info()
        self._settings = None
        if self._wanted_settings is not None:
            logger.info("%s: re-applying %s after reconnect", self.label, self._wanted_settings)
            self.configure(self._wanted_settings)
        if self._wanted_cooler is not None and self._info.has_cooler:
            on, setpoint = self._wanted_cooler
            logger.info("%s: re-applying cooler on=%s set-point=%s", self.label, on, setpoint)
            self.set_cooler(on, setpoint)

    def _read_info(self) -> CameraInfo:
        name = str(self._get("Name"))
        sensor = self._probe("SensorName")
        width = int(self._get("CameraXSize"))
        height = int(self._get("CameraYSize"))
        max_adu = int(self._probe("MaxADU") or 65535)
        bits = max(1, math.ceil(math.log2(max_adu + 1)))
        # Contract: images arrive scaled to 16 bits. Scale n-bit ADU when MaxADU is 2^n - 1.
        self._adu_scale = 1 << (16 - bits) if bits < 16 and max_adu + 1 == 1 << bits else 1
        pixel = float(self._probe("PixelSizeX") or 0.0)
        exp_min = float(self._get("ExposureMin"))
        exp_max = float(self._get("ExposureMax"))
        if exp_min <= 0:
            # alpaca-simulators' template says 0; a zero-second exposure is no bias frame.
            resolution = float(self._probe("ExposureResolution") or 0.0)
            exp_min = resolution if resolution > 0 else 0.001
            logger.info("%s: ExposureMin <= 0 reported; using %g s", self.label, exp_min)
        self._can_abort = bool(self._probe("CanAbortExposure"))
        self._can_stop = bool(self._probe("CanStopExposure"))
        has_cooler = bool(self._probe("CanSetCCDTemperature"))
        self._can_cooler_power = bool(self._probe("CanGetCoolerPower"))
        full_well = self._probe("FullWellCapacity")  # electrons, at the settings of the moment
        modes = self._probe("ReadoutModes")
        self._has_readout_modes = bool(modes)
        readout_modes = tuple(str(m) for m in modes) if modes else ("default",)
        max_bin = min(int(self._probe("MaxBinX") or 1), int(self._probe("MaxBinY") or 1))
        sensor_type = self._probe("SensorType")
        self._sensor_type = None if sensor_type is None else int(sensor_type)
        pattern = bayer_pattern(
            None if sensor_type is None else int(sensor_type),
            int(self._probe("BayerOffsetX") or 0) if sensor_type not in (None, 0, 1) else 0,
            int(self._probe("BayerOffsetY") or 0) if sensor_type not in (None, 0, 1) else 0,
        )
        self._gain_mode, gain_min, gain_max, gain_names = self._level_capability("Gain")
        self._offset_mode, offset_min, offset_max, _ = self._level_capability("Offset")
        return CameraInfo(
            model=f"{name} ({sensor})" if sensor else name,
            camera_id=self._camera_id(name),
            width=width,
            height=height,
            bit_depth=bits,
            pixel_size_um=pixel,
            gain_min=gain_min,
            gain_max=gain_max,
            offset_min=offset_min,
            offset_max=offset_max,
            min_exposure_s=exp_min,
            max_exposure_s=exp_max,
            has_cooler=has_cooler,
            has_shutter=bool(self._probe("HasShutter")),
            readout_modes=readout_modes,
            binnings=tuple(range(1, max(1, max_bin) + 1)),
            bayer_pattern=pattern,
            gain_names=gain_names,
            readout_s=0.5 + width * height * 2 / 20e6,
            full_well_e=_positive_or_none(full_well),
        )

    def _level_capability(self, kind: str) -> tuple[LevelMode, int, int, tuple[str, ...]]:
        """Gain/Offset: ('list', 0, n-1, names) | ('range', min, max, ()) | ('none', 0, 0, ())."""
        names = self._probe(f"{kind}s")
        if names:
            return "list", 0, len(names) - 1, tuple(str(n) for n in names)
        low, high = self._probe(f"{kind}Min"), self._probe(f"{kind}Max")
        if low is not None and high is not None:
            return "range", int(low), int(high), ()
        return "none", 0, 0, ()

    def _camera_id(self, name: str) -> str:
        """UniqueID from the management API when the server has one, else name@server/number."""
        from calibd.drivers.alpaca.discovery import configured_devices

        try:
            for entry in configured_devices(self.host, self.port, timeout_s=self.timeout_s):
                if (
                    str(entry.get("DeviceType", "")).lower() == "camera"
                    and int(entry.get("DeviceNumber", -1)) == self.device_number
                    and entry.get("UniqueID")
                ):
                    return str(entry["UniqueID"])
        except (OSError, ValueError) as err:
            logger.debug("%s: no management API (%s)", self.label, err)
        return f"{name}@{self.host}:{self.port}/camera/{self.device_number}"

    # -- settings --------------------------------------------------------------------------------

    def configure(self, settings: CaptureSettings) -> CaptureSettings:
        """Apply read-out mode, binning (then the full binned subframe), gain and offset.

        Returns the values read back. Blocks for about 10-12 requests. Raises SettingRejected
        (with the device's message), DeviceUnavailable.
        """
        self._require()
        info = self.info
        if self._sensor_type == 1:  # Color: rank-3 debayered images (see imagebytes)
            raise SettingRejected(f"SensorType Color: {RANK3_REFUSED}", device=self.label)
        bayer.refuse_debayered(settings.readout_mode, self.label)
        binning = settings.binning
        if binning not in info.binnings:
            raise SettingRejected(
                f"binning {binning} not offered (the camera has {info.binnings})", device=self.label
            )
        mode = self._readout_index(settings.readout_mode)
        if mode is not None:
            self._set("ReadoutMode", mode)
        self._set("BinX", binning)
        self._set("BinY", binning)
        self._set("NumX", info.width // binning)
        self._set("NumY", info.height // binning)
        self._set("StartX", 0)
        self._set("StartY", 0)
        self._apply_level("Gain", settings.gain, self._gain_mode)
        self._apply_level("Offset", settings.offset, self._offset_mode)
        self._wanted_settings = settings
        applied = self._read_back()
        if applied.gain != settings.gain or applied.offset != settings.offset:
            logger.warning("%s: asked for %s, the camera reports %s", self.label, settings, applied)
        return applied

    def _readout_index(self, name: str) -> int | None:
        modes = self.info.readout_modes
        if not self._has_readout_modes:
            if name != "default":
                raise SettingRejected(
                    f"read-out mode {name!r}: the camera has no read-out modes", device=self.label
                )
            return None
        if name in modes:
            return modes.index(name)
        if name == "default":
            return 0
        raise SettingRejected(
            f"unknown read-out mode {name!r} (the camera has {modes})", device=self.label
        )

    def _apply_level(self, kind: str, value: int, mode: LevelMode) -> None:
        if mode == "none":
            if value != 0:
                raise SettingRejected(
                    f"{kind} {value}: the camera has no {kind.lower()} control", device=self.label
                )
            return
        self._set(kind, int(value))

    def _read_level(self, kind: str, mode: LevelMode) -> int:
        if mode == "none":
            return 0
        raw = int(self._get(kind))
        if kind == "Gain" and mode == "list" and Quirk.GAIN_INDEX_READBACK_PLUS_ONE in self.quirks:
            raw -= 1
        return raw

    def _read_back(self) -> CaptureSettings:
        binx, biny = int(self._get("BinX")), int(self._get("BinY"))
        if binx != biny:
            logger.warning("%s: asymmetric binning %dx%d read back", self.label, binx, biny)
        self._frame_shape = (int(self._get("NumY")), int(self._get("NumX")))
        sensor = self.info.bayer_pattern
        self._frame_bayer = None if bayer.normalize(sensor) is None else frame_pattern(
            sensor, int(self._get("StartX")), int(self._get("StartY")), binx)
        mode_name = "default"
        if self._has_readout_modes:
            index = int(self._get("ReadoutMode"))
            modes = self.info.readout_modes
            mode_name = modes[index] if 0 <= index < len(modes) else f"mode {index}"
        self._settings = CaptureSettings(
            gain=self._read_level("Gain", self._gain_mode),
            offset=self._read_level("Offset", self._offset_mode),
            binning=binx,
            readout_mode=mode_name,
        )
        return self._settings

    # -- cooler ----------------------------------------------------------------------------------

    def cooler_state(self) -> CoolerState:
        """Read CCDTemperature, CoolerOn, SetCCDTemperature, CoolerPower, HeatSinkTemperature.

        Blocks for up to 5 requests. Raises NotSupported (no cooler), DeviceUnavailable.
        """
        self._require()
        if not self.info.has_cooler:
            raise NotSupported("the camera has no cooler control", device=self.label)
        setpoint = self._probe("SetCCDTemperature")
        power = self._probe("CoolerPower") if self._can_cooler_power else None
        heatsink = self._probe("HeatSinkTemperature")
        return CoolerState(
            temperature_c=float(self._get("CCDTemperature")),
            on=bool(self._get("CoolerOn")),
            setpoint_c=None if setpoint is None else float(setpoint),
            power_pct=None if power is None else float(power),
            heatsink_c=None if heatsink is None else float(heatsink),
        )

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        """Write SetCCDTemperature (when given, °C) then CoolerOn. Does not wait.

        Raises SettingRejected (set-point refused, with the device's message), NotSupported,
        DeviceUnavailable.
        """
        self._require()
        if not self.info.has_cooler:
            raise NotSupported("the camera has no cooler control", device=self.label)
        if setpoint_c is not None:
            if not math.isfinite(setpoint_c):
                raise SettingRejected(
                    f"set-point {setpoint_c} is not a temperature", device=self.label
                )
            self._set("SetCCDTemperature", float(setpoint_c))
        self._set("CoolerOn", bool(on))
        previous = self._wanted_cooler[1] if self._wanted_cooler else None
        self._wanted_cooler = (bool(on), setpoint_c if setpoint_c is not None else previous)

    def _sensor_temperature(self) -> float | None:
        value = self._probe("CCDTemperature")
        return None if value is None else float(value)

    # -- exposure --------------------------------------------------------------------------------

    def default_timeout_s(self, exposure_s: float) -> float:
        """The deadline :meth:`expose` uses without ``timeout_s``, in clock seconds: 2 x exposure
        + a read-out margin of the download budget + 5 real seconds (converted to clock seconds
        with the clock's scale)."""
        per_clock_s = self._clock.real_seconds(1.0)
        margin_real_s = self._download_budget_s() + 5.0
        return 2.0 * exposure_s + (margin_real_s / per_clock_s if per_clock_s > 0 else 0.0)

    def _download_budget_s(self) -> float:
        """Real seconds one image download may take (see the class docstring)."""
        if self.download_timeout_s is not None:
            return self.download_timeout_s
        return max(10.0, 4.0 * self.info.readout_s)

    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        """StartExposure(exposure_s, Light=not dark), wait for ImageReady, download, read back.

        Blocks for about exposure + read-out, never past ``timeout_s`` (clock seconds; default
        :meth:`default_timeout_s`). Raises ExposureTimeout (deadline; the exposure is aborted),
        ExposureFailed (aborted, camera error, bad image), SettingRejected (exposure refused by
        the device), DeviceUnavailable (server gone, device disconnected).
        """
        self._require()
        if not math.isfinite(exposure_s) or exposure_s < 0:
            raise SettingRejected(f"exposure {exposure_s} s is not a duration", device=self.label)
        clock = self._clock
        budget = timeout_s if timeout_s is not None else self.default_timeout_s(exposure_s)
        deadline = clock.monotonic() + budget
        with self._guard.exposing(
            self.label, on_end=self._forget_exposure, stop=self._abort_on_device
        ):
            return self._expose(exposure_s, dark, deadline, budget)

    def _forget_exposure(self) -> None:
        """The end of an exposure (under the guard's lock): nothing runs or downloads."""
        self._running = None
        self._download = None

    def _expose(self, exposure_s: float, dark: bool, deadline: float, budget: float) -> Frame:
        clock = self._clock
        if not bool(self._get("Connected", context="exposure")):
            self._connected = False
            raise DeviceUnavailable(
                "the device reports it is not connected (server restarted or another client "
                "disconnected it): reconnect, which re-applies the settings",
                device=self.label,
            )
        self._wait_out_unstopped_exposure(deadline)
        settings = self._settings or self._read_back()
        temp_start = self._sensor_temperature()
        setpoint = self._probe("SetCCDTemperature") if self.info.has_cooler else None
        if self._guard.abort.is_set():
            raise ExposureFailed("exposure aborted before it started", device=self.label)
        requested_start = clock.now()
        started = clock.monotonic()
        dev = self._dev
        self._call(
            lambda: dev.StartExposure(exposure_s, not dark),
            what=f"StartExposure({exposure_s}, Light={not dark})",
            context="exposure",
        )
        with self._guard.lock:
            self._running = (started, exposure_s)
            self._abort_sent = False
        self._wait_image_ready(started, exposure_s, deadline, budget)
        with self._guard.lock:
            self._running = None  # exposed and read out: nothing left to abort on the device
        data = self._download_image(deadline)
        in_memory = clock.monotonic()
        if self._frame_shape is not None and data.shape != self._frame_shape:
            raise ExposureFailed(
                f"image is {data.shape[1]}x{data.shape[0]}, the camera's subframe is "
                f"{self._frame_shape[1]}x{self._frame_shape[0]}",
                device=self.label,
            )
        if self._adu_scale != 1:
            data = data * self._adu_scale
        return Frame(
            data=data,
            exposure_s=self._last_duration(exposure_s),
            dark=dark,
            settings=settings,
            start_utc=self._last_start(requested_start),
            temp_start_c=temp_start,
            temp_end_c=self._sensor_temperature(),
            setpoint_c=None if setpoint is None else float(setpoint),
            readout_s=max(0.0, in_memory - (started + exposure_s)),
            electrons_per_adu=self._electrons_per_adu(),
            bayer_pattern=self._frame_bayer,
        )

    def _wait_image_ready(
        self, started: float, exposure_s: float, deadline: float, budget: float
    ) -> None:
        """Poll until ImageReady with the camera Idle (or Download). During the exposure only a
        cheap CameraState check per second, so a dead server or an error shows early."""
        clock = self._clock
        nominal_end = started + exposure_s
        last_state_check = started
        timed_out = f"no image {budget:.1f} s after starting a {exposure_s:g} s exposure"
        while True:
            now = clock.monotonic()
            # Stops on the device after abort() too: it may have come before the exposure was
            # registered as running.
            self._guard.end_wait_if_over(now, deadline, timed_out)
            if now < nominal_end - _FAST_POLL_S:
                self._check_state(allow_ready=False)
                last_state_check = now
                wait = min(_ALIVE_CHECK_S, nominal_end - now - _FAST_POLL_S / 2, deadline - now)
                clock.wait(self._guard.abort, wait)
                continue
            if bool(self._get("ImageReady", context="exposure")):
                # Accept only with the camera Idle/Download: a stale ImageReady from an earlier
                # exposure can be True while the new one is still Waiting/Exposing.
                if self._check_state(allow_ready=True):
                    return
            elif now - last_state_check >= _ALIVE_CHECK_S:
                self._check_state(allow_ready=False)
                last_state_check = now
            poll = _FAST_POLL_S if now - nominal_end < 2.0 else _SLOW_POLL_S
            clock.wait(self._guard.abort, min(poll, max(0.0, deadline - now)))

    def _check_state(self, *, allow_ready: bool) -> bool:
        state = int(self._get("CameraState", context="exposure"))
        if state == CameraStates.ERROR:
            raise ExposureFailed("the camera reports CameraState Error", device=self.label)
        return allow_ready and state in (CameraStates.IDLE, CameraStates.DOWNLOAD)

    def _download_image(self, deadline: float) -> ImageArray:
        clock = self._clock
        left_real_s = clock.real_seconds(deadline - clock.monotonic())
        budget = min(left_real_s, self._download_budget_s())  # real seconds
        if budget <= 0:
            self._abort_on_device("deadline")
            raise ExposureTimeout("no time left to download the image", device=self.label)
        self._transaction += 1
        params = {"ClientTransactionID": str(self._transaction)}
        client_id = self.client_id if self.client_id is not None else self._alpyca_client_id()
        if client_id is not None:
            params["ClientID"] = str(client_id)
        download = ImageDownload(
            self.host,
            self.port,
            f"/api/v1/camera/{self.device_number}/imagearray",
            params,
            deadline=time.monotonic() + budget,
            connect_timeout_s=self.timeout_s,
            device=self.label,
        )
        with self._guard.lock:
            if self._guard.abort.is_set():
                raise ExposureFailed("exposure aborted", device=self.label)
            self._download = download
        started = time.monotonic()
        try:
            data = download.run()
        except DeviceUnavailable:
            self._connected = False
            raise
        except ExposureTimeout:
            logger.warning(
                "%s: image download stalled; given up after %.1f s",
                self.label,
                time.monotonic() - started,
            )
            raise
        logger.debug(
            "%s: downloaded %s %s image (%d bytes) in %.3f s",
            self.label,
            data.shape,
            download.content_type,
            download.bytes_read,
            time.monotonic() - started,
        )
        return data

    def _alpyca_client_id(self) -> int | None:
        """The ClientID alpyca sends for its calls (one random id per process)."""
        value = getattr(self._dev, "_client_id", None)
        return value if isinstance(value, int) else None

    def _last_duration(self, requested: float) -> float:
        try:
            value = self._probe("LastExposureDuration")
        except DeviceError:
            value = None
        return requested if value is None else float(value)

    def _last_start(self, fallback: datetime) -> datetime:
        try:
            value = self._probe("LastExposureStartTime")
            if value:
                return parse_alpaca_time(str(value))
        except (DeviceError, ValueError) as err:
            logger.debug("%s: LastExposureStartTime unusable: %s", self.label, err)
        return fallback

    def _electrons_per_adu(self) -> float | None:
        try:
            value = self._probe("ElectronsPerADU")
        except DeviceError:
            return None
        return None if value is None else float(value) / self._adu_scale

    # -- abort -----------------------------------------------------------------------------------

    def abort(self) -> None:
        """End a running exposure or download from any thread; a no-op when idle. Never raises.
        Blocks for at most one request (AbortExposure, else StopExposure)."""
        try:
            with self._guard.lock:
                if not self._guard.busy:
                    return
                self._guard.abort.set()
                download = self._download
                running = self._running is not None
            if download is not None:
                download.cancel()
            if running:
                self._abort_on_device("abort()")
        except Exception as err:  # abort never raises
            logger.warning("%s: abort failed: %s", self.label, err)

    def _abort_on_device(self, why: str) -> None:
        """AbortExposure (or StopExposure) on the device, best effort; remembers an exposure the
        server will not really stop (Quirk.ABORT_KEEPS_EXPOSING)."""
        with self._guard.lock:
            running = self._running
            if running is None or self._abort_sent:
                return
            self._abort_sent = True
        dev = self._dev
        try:
            if self._can_abort:
                self._call(dev.AbortExposure, what="AbortExposure()", context="exposure")
            elif self._can_stop:
                self._call(dev.StopExposure, what="StopExposure()", context="exposure")
            else:
                logger.info("%s: cannot abort or stop (%s); the exposure runs out", self.label, why)
        except DeviceError as err:
            logger.warning("%s: aborting the exposure (%s) failed: %s", self.label, why, err)
        if Quirk.ABORT_KEEPS_EXPOSING in self.quirks or not (self._can_abort or self._can_stop):
            started, exposure_s = running
            with self._guard.lock:
                self._unstopped_until = started + exposure_s + _UNSTOPPED_GRACE_S

    def _wait_out_unstopped_exposure(self, deadline: float) -> None:
        """Before the next StartExposure: if an aborted exposure is still running on the server
        (it will set ImageReady with its own image), wait until it has finished."""
        with self._guard.lock:
            until, self._unstopped_until = self._unstopped_until, None
        if until is None:
            return
        clock = self._clock
        limit = min(until, deadline)
        waited = clock.monotonic()
        while clock.monotonic() < limit:
            if bool(self._get("ImageReady", context="exposure")):
                break
            if clock.wait(self._guard.abort, 0.1):
                raise ExposureFailed("exposure aborted", device=self.label)
        else:
            logger.warning("%s: the aborted exposure never reported its end", self.label)
        logger.info(
            "%s: waited %.2f s for an aborted exposure the server kept running",
            self.label,
            clock.monotonic() - waited,
        )


def _positive_or_none(value: Any) -> float | None:
    """A positive finite number as float, else None (absent, zero, nonsense)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
