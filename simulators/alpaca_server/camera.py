"""The Alpaca Camera (interface version 4) over :class:`simulators.camera.SimulatedCamera`.

StartExposure validates and returns at once; the exposure runs in a background thread
(:mod:`simulators.alpaca_server.exposure`) while CameraState goes Exposing -> Reading -> Idle with
ImageReady. Settings (gain, offset, binning, read-out mode) go through
``SimulatedCamera.configure``, so out-of-range values are refused with the simulator's own message
(InvalidValue, 0x401). Binning and subframe follow the specification: NumX/NumY/StartX/StartY are
in binned pixels and are *not* changed when the binning changes; a subframe that does not fit is
refused at StartExposure (InvalidValue).

A colour profile is SensorType 2 (RGGB family) with BayerOffsetX/Y placing the R G / G B matrix
as ICameraV3 defines them: relative to sensor pixel (0, 0), X to the right, Y down, unchanged by
the subframe (a client adds an odd StartX/StartY itself). Binning is by colour (the image stays a
mosaic; ASCOM leaves colour binning to the driver). A monochrome profile is SensorType 0 and
BayerOffsetX/Y are NotImplemented, as the specification requires.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from typing import ClassVar

from calibd.drivers import bayer
from calibd.drivers.clock import Clock
from calibd.drivers.contracts import CaptureSettings
from calibd.drivers.errors import NotSupported
from calibd.simulators.alpaca_server.device import AlpacaDevice
from calibd.simulators.alpaca_server.device import ImageResult
from calibd.simulators.alpaca_server.exposure import Exposures
from calibd.simulators.alpaca_server.exposure import Subframe
from calibd.simulators.alpaca_server.protocol import Params
from calibd.simulators.alpaca_server.protocol import format_utc
from calibd.simulators.alpaca_server.protocol import invalid_value
from calibd.simulators.alpaca_server.protocol import value_not_set
from calibd.simulators.camera import SimulatedCamera

log = logging.getLogger(__name__)

EXPOSURE_RESOLUTION_S = 1e-6
MAX_ADU = 65535  # frames are delivered scaled to 16 bits whatever the native bit depth


class CameraDevice(AlpacaDevice):
    """One simulated camera as an Alpaca Camera.

    Not implemented (NotImplemented, 0x400): BayerOffsetX/Y (monochrome sensors), FastReadout
    (CanFastReadout is False), Gains/Offsets (gain and offset are values in Min..Max),
    IsPulseGuiding/PulseGuide (CanPulseGuide is False), SubExposureDuration.
    """

    type_name = "Camera"
    interface_version = 4
    constants: ClassVar[Mapping[str, Any]] = {
        "maxadu": MAX_ADU,
        "exposureresolution": EXPOSURE_RESOLUTION_S,
        "canabortexposure": True,
        "canstopexposure": True,
        "canasymmetricbin": False,
        "canfastreadout": False,
        "canpulseguide": False,
    }
    attributes: ClassVar[Mapping[str, str]] = {
        "sensorname": "_sensor_name",
        "cameraxsize": "_camera.info.width",
        "cameraysize": "_camera.info.height",
        "pixelsizex": "_camera.info.pixel_size_um",
        "pixelsizey": "_camera.info.pixel_size_um",
        "fullwellcapacity": "_camera.profile.full_well_e",
        "exposuremin": "_camera.info.min_exposure_s",
        "exposuremax": "_camera.info.max_exposure_s",
        "hasshutter": "_camera.info.has_shutter",
        "cansetccdtemperature": "_camera.info.has_cooler",
        "cangetcoolerpower": "_camera.info.has_cooler",
        "gain": "_settings.gain",
        "gainmin": "_camera.info.gain_min",
        "gainmax": "_camera.info.gain_max",
        "offset": "_settings.offset",
        "offsetmin": "_camera.info.offset_min",
        "offsetmax": "_camera.info.offset_max",
        "binx": "_settings.binning",
        "biny": "_settings.binning",
        "heatsinktemperature": "_camera.cooler.ambient_c",
        "cooleron": "_camera.cooler.on",
    }

    def __init__(
        self,
        camera: SimulatedCamera,
        clock: Clock,
        *,
        unique_id: str,
        sensor_name: str,
        number: int = 0,
    ) -> None:
        profile = camera.profile
        super().__init__(
            number,
            name=profile.model,
            description=f"calibd simulated camera (profile {profile.name})",
            unique_id=unique_id,
            clock=clock,
        )
        self._camera = camera
        self._sensor_name = sensor_name
        self._settings = CaptureSettings(
            gain=profile.unity_gain, offset=10, binning=1, readout_mode=profile.readout_modes[0]
        )
        self._subframe: Subframe = (0, 0, profile.width, profile.height)
        self._exposures = Exposures(camera, clock, self.label)

    # -- connection ----------------------------------------------------------------------------

    def _is_connected(self) -> bool:
        return self._camera.connected

    def _connect(self) -> None:
        self._camera.connect()

    def _disconnect(self) -> None:
        self._exposures.interrupt("abort")
        self._camera.disconnect()

    def shutdown(self) -> None:
        self._exposures.interrupt("abort")

    def _device_state(self) -> Sequence[tuple[str, Any]]:
        cooler = self._camera.cooler
        return (
            ("CameraState", int(self._exposures.state())),
            ("CCDTemperature", cooler.temperature_c()),
            ("CoolerOn", cooler.on),
            ("CoolerPower", cooler.power_pct()),
            ("HeatSinkTemperature", cooler.ambient_c),
            ("ImageReady", self._exposures.image_ready()),
            ("PercentCompleted", self._exposures.percent_completed()),
        )

    # -- capabilities --------------------------------------------------------------------------

    def get_electronsperadu(self, p: Params) -> float:
        return self._camera.sensor.e_per_adu16(self._settings.gain)

    def get_sensortype(self, p: Params) -> int:
        """0 (Monochrome) or 2 (RGGB: a Bayer mosaic, phase in BayerOffsetX/Y)."""
        return 0 if self._camera.profile.bayer is None else 2

    def _bayer_offsets(self) -> tuple[int, int]:
        pattern = self._camera.profile.bayer
        if pattern is None:
            raise NotSupported("a monochrome sensor has no Bayer matrix", device=self.label)
        return bayer.ASCOM_OFFSETS[pattern]

    def get_bayeroffsetx(self, p: Params) -> int:
        return self._bayer_offsets()[0]

    def get_bayeroffsety(self, p: Params) -> int:
        return self._bayer_offsets()[1]

    def get_maxbinx(self, p: Params) -> int:
        return max(self._camera.info.binnings)

    def get_maxbiny(self, p: Params) -> int:
        return max(self._camera.info.binnings)

    # -- settings --------------------------------------------------------------------------------

    def _apply(self, settings: CaptureSettings) -> None:
        """Validate and apply through the simulator (SettingRejected -> InvalidValue)."""
        with self._lock:
            self._settings = self._camera.configure(settings)

    def put_gain(self, p: Params) -> None:
        self._apply(replace(self._settings, gain=p.integer("Gain")))

    def put_offset(self, p: Params) -> None:
        self._apply(replace(self._settings, offset=p.integer("Offset")))

    def get_readoutmodes(self, p: Params) -> list[str]:
        return list(self._camera.info.readout_modes)

    def get_readoutmode(self, p: Params) -> int:
        return self._camera.info.readout_modes.index(self._settings.readout_mode)

    def put_readoutmode(self, p: Params) -> None:
        index, modes = p.integer("ReadoutMode"), self._camera.info.readout_modes
        if not 0 <= index < len(modes):
            raise invalid_value(f"read-out mode {index} outside 0..{len(modes) - 1}")
        self._apply(replace(self._settings, readout_mode=modes[index]))

    def put_binx(self, p: Params) -> None:
        # CanAsymmetricBin is False: BinX and BinY are one setting.
        self._apply(replace(self._settings, binning=p.integer("BinX")))

    def put_biny(self, p: Params) -> None:
        self._apply(replace(self._settings, binning=p.integer("BinY")))

    def get_startx(self, p: Params) -> int:
        return self._subframe[0]

    def get_starty(self, p: Params) -> int:
        return self._subframe[1]

    def get_numx(self, p: Params) -> int:
        return self._subframe[2]

    def get_numy(self, p: Params) -> int:
        return self._subframe[3]

    def put_startx(self, p: Params) -> None:
        self._set_subframe(0, "StartX", p.integer("StartX"), minimum=0)

    def put_starty(self, p: Params) -> None:
        self._set_subframe(1, "StartY", p.integer("StartY"), minimum=0)

    def put_numx(self, p: Params) -> None:
        self._set_subframe(2, "NumX", p.integer("NumX"), minimum=1)

    def put_numy(self, p: Params) -> None:
        self._set_subframe(3, "NumY", p.integer("NumY"), minimum=1)

    def _set_subframe(self, index: int, name: str, value: int, *, minimum: int) -> None:
        """Only the sign is checked here; the fit to the frame is checked at StartExposure."""
        if value < minimum:
            raise invalid_value(f"{name} {value} must be at least {minimum}")
        with self._lock:
            values = list(self._subframe)
            values[index] = value
            self._subframe = (values[0], values[1], values[2], values[3])

    # -- cooler ----------------------------------------------------------------------------------

    def get_ccdtemperature(self, p: Params) -> float:
        return self._camera.cooler.temperature_c()

    def put_cooleron(self, p: Params) -> None:
        with self._lock:
            self._camera.set_cooler(p.boolean("CoolerOn"))

    def get_coolerpower(self, p: Params) -> float:
        return self._camera.cooler.power_pct()

    def get_setccdtemperature(self, p: Params) -> float:
        # Before any set-point the cooler holds the ambient (its equilibrium with no target).
        cooler = self._camera.cooler
        return cooler.setpoint_c if cooler.setpoint_c is not None else cooler.ambient_c

    def put_setccdtemperature(self, p: Params) -> None:
        value = p.number("SetCCDTemperature")
        with self._lock:
            self._camera.set_cooler(self._camera.cooler.on, value)

    # -- exposure --------------------------------------------------------------------------------

    def put_startexposure(self, p: Params) -> None:
        """Validate and start; the exposure runs in the background (see :class:`Exposures`)."""
        duration, light = p.number("Duration"), p.boolean("Light")
        info = self._camera.info
        with self._lock:
            if not info.min_exposure_s <= duration <= info.max_exposure_s:
                raise invalid_value(
                    f"exposure {duration} s outside {info.min_exposure_s}..{info.max_exposure_s} s"
                )
            binning = self._settings.binning
            width, height = info.width // binning, info.height // binning
            sx, sy, nx, ny = sub = self._subframe
            if sx + nx > width or sy + ny > height:
                raise invalid_value(
                    f"subframe {nx}x{ny} at ({sx}, {sy}) does not fit the {width}x{height} "
                    f"frame at binning {binning}: set NumX/NumY/StartX/StartY after BinX/BinY"
                )
            settings = self._camera.configure(self._settings)
            self._exposures.start(duration, dark=not light, sub=sub, settings=settings)
        log.debug("%s: %g s exposure started (light=%s)", self.label, duration, light)

    def put_abortexposure(self, p: Params) -> None:
        """Discard the running exposure; Idle, no image. A no-op when idle."""
        self._exposures.interrupt("abort")

    def put_stopexposure(self, p: Params) -> None:
        """End the running exposure early and read it out (ImageReady follows). A no-op when
        idle or already reading out."""
        self._exposures.interrupt("stop")

    def get_camerastate(self, p: Params) -> int:
        return int(self._exposures.state())

    def get_imageready(self, p: Params) -> bool:
        return self._exposures.image_ready()

    def get_percentcompleted(self, p: Params) -> int:
        return self._exposures.percent_completed()

    def get_imagearray(self, p: Params) -> ImageResult:
        return ImageResult(self._exposures.image())

    def get_imagearrayvariant(self, p: Params) -> ImageResult:
        return ImageResult(self._exposures.image())

    def get_lastexposureduration(self, p: Params) -> float:
        return self._last()[0]

    def get_lastexposurestarttime(self, p: Params) -> str:
        return format_utc(self._last()[1])

    def _last(self) -> tuple[float, datetime]:
        last = self._exposures.last()
        if last is None:
            raise value_not_set("no exposure has been taken yet")
        return last
