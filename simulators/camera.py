"""The simulated cooled camera: :class:`drivers.contracts.Camera` over the sensor and cooler models.

Time runs on the injected :class:`~drivers.clock.Clock`, so with a scaled clock a 600 s dark takes
600/scale real seconds. Faults can be injected deterministically (every Nth exposure) to exercise
the sequencer's recovery paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace

from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CameraInfo
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.contracts import CoolerState
from calibd.drivers.contracts import Frame
from calibd.drivers.errors import DeviceUnavailable
from calibd.drivers.errors import ExposureFailed
from calibd.drivers.errors import ExposureTimeout
from calibd.drivers.errors import NotSupported
from calibd.drivers.errors import SettingRejected
from calibd.drivers.exposure_guard import ExposureGuard
from calibd.simulators.cooler import CoolerModel
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sensor import SensorModel

log = logging.getLogger(__name__)

LightProvider = Callable[[], Illumination | None]


@dataclass(frozen=True)
class SimFaults:
    """Deterministic fault injection: ``*_every = N`` fires on every Nth exposure (0 = never)."""

    fail_every: int = 0  # the exposure ends in ExposureFailed
    timeout_every: int = 0  # the exposure hangs until its deadline: ExposureTimeout
    disconnect_every: int = 0  # the camera drops off the bus: DeviceUnavailable until connect()
    thermal_glitch_every: int = 0  # a heat pulse of ``thermal_glitch_c`` during the exposure
    thermal_glitch_c: float = 2.0
    light_leak_every: int = 0  # light reaches a dark frame
    light_leak_e_per_s: float = 50.0
    ignore_gain_offset: bool = False  # configure() keeps the gain and offset it had (and says so)
    bug_every: int = 0  # the exposure raises RuntimeError: a driver bug, not a device error

    def fires(self, every: int, count: int) -> bool:
        return every > 0 and count % every == 0


class SimulatedCamera:
    """A simulated camera. Thread-safe for :meth:`abort` and :meth:`cooler_state`; a second
    :meth:`expose` while one runs raises ExposureFailed at once, as a real driver's does."""

    def __init__(
        self,
        profile: SensorProfile,
        clock: Clock,
        *,
        ambient_c: float = 10.0,
        noise_seed: int | None = None,
        faults: SimFaults | None = None,
        light: LightProvider | None = None,
        name: str = "simulator",
    ) -> None:
        self.profile = profile
        self.clock = clock
        self.name = name
        self.faults = faults or SimFaults()
        self.light = light
        self.sensor = SensorModel(profile, noise_seed)
        self.cooler = CoolerModel(
            clock, ambient_c=ambient_c, max_delta_c=profile.cooler_max_delta_c,
            tau_s=profile.cooler_tau_s,
        )
        self._connected = False
        self._settings = CaptureSettings(gain=profile.unity_gain, offset=10, binning=1,
                                         readout_mode=profile.readout_modes[0])
        self._guard = ExposureGuard()
        self._exposures = 0
        self.info = CameraInfo(
            model=profile.model,
            camera_id=f"SIM-{profile.name}-{profile.seed}",
            width=profile.width,
            height=profile.height,
            bit_depth=profile.bit_depth,
            pixel_size_um=profile.pixel_size_um,
            gain_min=0,
            gain_max=profile.gain_max,
            offset_min=0,
            offset_max=profile.offset_max,
            min_exposure_s=profile.min_exposure_s,
            max_exposure_s=profile.max_exposure_s,
            has_cooler=True,
            has_shutter=False,
            readout_modes=profile.readout_modes,
            binnings=profile.binnings,
            unity_gain=profile.unity_gain,
            readout_s=profile.readout_s,
            cooler_max_delta_c=profile.cooler_max_delta_c,
            full_well_e=profile.full_well_e,
            min_setpoint_c=profile.min_setpoint_c,
            max_setpoint_c=profile.max_setpoint_c,
            bayer_pattern=profile.bayer,  # colour binning keeps it at every binning
        )

    # ----- Camera protocol ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if not self._connected:
            log.debug("%s: connected (%s)", self.name, self.info.camera_id)
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False
        self.sensor.release()  # like a camera switched off: its frame buffers go

    def configure(self, settings: CaptureSettings) -> CaptureSettings:
        self._require()
        info = self.info
        if settings.readout_mode == "default":
            settings = replace(settings, readout_mode=info.readout_modes[0])
        checks = [
            (info.gain_min <= settings.gain <= info.gain_max,
             f"gain {settings.gain} outside {info.gain_min}..{info.gain_max}"),
            (info.offset_min <= settings.offset <= info.offset_max,
             f"offset {settings.offset} outside {info.offset_min}..{info.offset_max}"),
            (settings.binning in info.binnings,
             f"binning {settings.binning} not in {list(info.binnings)}"),
            (settings.readout_mode in info.readout_modes,
             f"read-out mode {settings.readout_mode!r} not in {list(info.readout_modes)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingRejected(message, device=self.name)
        if self.faults.ignore_gain_offset:  # accepted, not applied; the read-back tells
            settings = replace(settings, gain=self._settings.gain, offset=self._settings.offset)
        self._settings = settings
        return settings

    def cooler_state(self) -> CoolerState:
        self._require()
        return CoolerState(
            temperature_c=self.cooler.temperature_c(),
            on=self.cooler.on,
            setpoint_c=self.cooler.setpoint_c,
            power_pct=self.cooler.power_pct(),
            heatsink_c=self.cooler.ambient_c,
        )

    def set_cooler(self, on: bool, setpoint_c: float | None = None) -> None:
        self._require()
        if not self.info.has_cooler:
            raise NotSupported("no cooler", device=self.name)
        p = self.profile
        if setpoint_c is not None and not p.min_setpoint_c <= setpoint_c <= p.max_setpoint_c:
            raise SettingRejected(
                f"set-point {setpoint_c} °C outside {p.min_setpoint_c}..{p.max_setpoint_c} °C",
                device=self.name,
            )
        self.cooler.set(on, setpoint_c)

    def expose(self, exposure_s: float, *, dark: bool, timeout_s: float | None = None) -> Frame:
        self._require()
        info = self.info
        if not info.min_exposure_s <= exposure_s <= info.max_exposure_s:
            raise SettingRejected(
                f"exposure {exposure_s} s outside {info.min_exposure_s}..{info.max_exposure_s} s",
                device=self.name,
            )
        with self._guard.exposing(self.name):
            return self._expose(exposure_s, dark, timeout_s)

    def abort(self) -> None:
        """End a running :meth:`expose` (it raises ExposureFailed); a no-op when idle."""
        self._guard.request_abort()

    # ----- internals ---------------------------------------------------------------------------
    def _expose(self, exposure_s: float, dark: bool, timeout_s: float | None) -> Frame:
        settings = self._settings
        readout = self.profile.readout_s / (settings.binning * settings.binning)
        deadline = timeout_s if timeout_s is not None else 2 * exposure_s + readout + 5.0
        abort = self._guard.abort
        self._exposures += 1
        n, f = self._exposures, self.faults
        start_utc = self.clock.now()
        temp_start = self.cooler.temperature_c()
        if f.fires(f.timeout_every, n):
            self.clock.wait(abort, deadline)
            raise ExposureTimeout(f"no image after {deadline:.1f} s (injected)", device=self.name)
        if f.fires(f.thermal_glitch_every, n):
            self.clock.wait(abort, exposure_s / 2)
            self.cooler.disturb(f.thermal_glitch_c)
            aborted = self.clock.wait(abort, exposure_s / 2)
        else:
            aborted = self.clock.wait(abort, exposure_s)
        if aborted:
            raise ExposureFailed("exposure aborted", device=self.name)
        temp_end = self.cooler.temperature_c()
        if f.fires(f.disconnect_every, n):
            self._connected = False
            raise DeviceUnavailable("camera vanished from the bus (injected)", device=self.name)
        if f.fires(f.fail_every, n):
            raise ExposureFailed("exposure failed (injected)", device=self.name)
        if f.fires(f.bug_every, n):
            raise RuntimeError(f"injected driver bug on exposure {n}")
        t_read = self.clock.monotonic()
        light = self.light() if self.light is not None else None
        if f.fires(f.light_leak_every, n) and dark:
            light = Illumination(flux_e_per_s=f.light_leak_e_per_s)
        real0 = time.perf_counter()
        data = self.sensor.frame(
            exposure_s=exposure_s,
            temperature_c=0.5 * (temp_start + temp_end),
            gain=settings.gain,
            offset=settings.offset,
            binning=settings.binning,
            readout_mode=settings.readout_mode,
            light=light,
        )
        compute_s = time.perf_counter() - real0
        # Read-out takes the profile's time; computing the frame counts toward it (real seconds
        # converted to clock seconds).
        per_clock_s = self.clock.real_seconds(1.0)
        remaining = readout - (compute_s / per_clock_s if per_clock_s > 0 else 0.0)
        if remaining > 0 and self.clock.wait(abort, remaining):
            raise ExposureFailed("exposure aborted during read-out", device=self.name)
        return Frame(
            data=data,
            exposure_s=exposure_s,
            dark=dark,
            settings=settings,
            start_utc=start_utc,
            temp_start_c=temp_start,
            temp_end_c=temp_end,
            setpoint_c=self.cooler.setpoint_c if self.cooler.on else None,
            readout_s=max(0.0, self.clock.monotonic() - t_read),
            electrons_per_adu=self.sensor.e_per_adu16(settings.gain),
            bayer_pattern=self.profile.bayer,  # binning is by colour: the mosaic keeps its phase
        )

    def _require(self) -> None:
        if not self._connected:
            raise DeviceUnavailable("not connected", device=self.name)
