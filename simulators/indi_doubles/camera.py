"""A camera double: one INDI CCD device with a real driver's property set (see
:mod:`simulators.indi_doubles.families`) whose frames come from
:class:`simulators.sensor.SensorModel` and whose temperature follows
:class:`simulators.cooler.CoolerModel`, on a scaled clock.

Behaviour copied from ``INDI::CCD`` and the drivers: a number outside its limits turns the vector
Alert (with a message) and changes nothing, and most vectors report Ok at once after it (see
``Vector.after_range_alert``); CCD_EXPOSURE goes Busy with the time left counting down, then the
FITS BLOB is sent and CCD_EXPOSURE turns Ok; an abort turns it Idle; CCD_TEMPERATURE is Busy until
the sensor is within the driver's threshold of the set-point, then Ok; cooler power is reported
every poll (ZWO: Busy while above 0 %); the Bayer keywords are written per frame, only when a
colour sensor sends its raw mosaic. Light comes from a snooped INDI light panel
(``FLAT_LIGHT_CONTROL`` on and ``FLAT_LIGHT_INTENSITY``), or from :attr:`CameraDouble.light` (the
sky of the simulated observatory the process also serves, see ``observatory.py``).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from calibd.simulators.clock import ScaledClock
from calibd.simulators.cooler import CoolerModel
from calibd.simulators.indi_doubles import base
from calibd.simulators.indi_doubles.families import DoubleFamily
from calibd.simulators.indi_doubles.protocol import DriverDevice
from calibd.simulators.indi_doubles.protocol import Incoming
from calibd.simulators.indi_doubles.protocol import Vector
from calibd.simulators.indi_doubles.protocol import Writer
from calibd.simulators.indi_doubles.protocol import render_blob
from calibd.simulators.indi_doubles.protocol import render_snoop
from calibd.simulators.profiles import SensorProfile
from calibd.simulators.profiles import get_profile
from calibd.simulators.sensor import Illumination
from calibd.simulators.sensor import SensorModel

PANEL_FLUX_E_PER_S = 100_000.0  # electrons per second per pixel at the panel's full intensity
_FRAME_NAMES = {"FRAME_LIGHT": ("Light", "Light Frame"), "FRAME_BIAS": ("Bias", "Bias Frame"),
                "FRAME_DARK": ("Dark", "Dark Frame"), "FRAME_FLAT": ("Flat", "Flat Field")}


def double_profile(family: DoubleFamily, width: int, height: int,
                   seed: int | None = None) -> SensorProfile:
    """The sensor a double simulates: the small test sensor (its colour twin, in the family's
    Bayer phase, for a colour family) with the family's ADC depth, gain and offset ranges and
    unity gain."""
    base = get_profile("small-colour" if family.bayer else "small")
    return base.with_overrides(
        bayer=family.bayer, name=family.key, model=family.model, width=width, height=height,
        bit_depth=family.bit_depth, unity_gain=family.unity_gain,
        gain_max=int(family.gain.hi), offset_max=int(family.offset.hi),
        pedestal_per_offset_adu=20.0, readout_s=0.02,
        seed=seed if seed is not None else 1000 + len(family.key))


@dataclass(frozen=True)
class _Applied:
    gain: int
    offset: int
    readout: str  # the sensor model's read-out mode
    mode: str  # the device's name for it


@dataclass
class DoubleOptions:
    scale: float = 1.0  # simulated seconds per real second
    width: int = 320
    height: int = 240
    ambient_c: float = 10.0
    panel_device: str | None = "Light Panel Simulator"
    seed: int | None = None
    polling_ms: int = 1000
    start: datetime | None = None  # the simulated clock reads ``start`` at real ``real_start``
    real_start: datetime | None = None


class CameraDouble(DriverDevice):
    """The device (see :class:`DriverDevice`); exposures run on a thread of their own, the
    poll reports the sensor's temperature and the cooler's power."""

    def __init__(self, family: DoubleFamily, options: DoubleOptions, writer: Writer) -> None:
        super().__init__(family.device, writer, base.before_connect(family, options.polling_ms))
        self.f = family
        self.opt = options
        self.clock = ScaledClock(options.scale, options.start, real_start=options.real_start)
        self.profile = double_profile(family, options.width, options.height, options.seed)
        self.sensor = SensorModel(self.profile)
        self.cooler = CoolerModel(self.clock, ambient_c=options.ambient_c,
                                  max_delta_c=self.profile.cooler_max_delta_c,
                                  tau_s=self.profile.cooler_tau_s)
        self._abort = threading.Event()
        self._exposing: threading.Thread | None = None
        self._panel_on = False
        self._panel_level = 0.0
        self._panel_max = 1.0
        self._last_temp: tuple[float, str] | None = None
        # What reaches the sensor instead of the snooped panel (the simulated observatory's sky)
        self.light: Callable[[], Illumination | None] | None = None

    def start(self) -> None:
        """Ask indiserver for the panel's properties (snooping) and start the poll thread."""
        if self.opt.panel_device:
            self.out.send(render_snoop(self.opt.panel_device))
        super().start()

    def stop(self) -> None:
        super().stop()
        self._abort.set()

    # ------------------------------------------------------------------ messages

    def on_text(self, vec: Vector, members: list[tuple[str, str]]) -> None:
        for name, text in members:
            if vec.has(name):
                vec[name].value = text
        self._set(vec, "Ok")

    def on_snooped(self, msg: Incoming) -> None:
        name = msg.attrs.get("name")
        values = dict(msg.members)
        if name == "FLAT_LIGHT_CONTROL" and "FLAT_LIGHT_ON" in values:
            self._panel_on = values["FLAT_LIGHT_ON"] == "On"
        elif name == "FLAT_LIGHT_INTENSITY" and "FLAT_LIGHT_INTENSITY_VALUE" in values:
            try:
                self._panel_level = float(values["FLAT_LIGHT_INTENSITY_VALUE"])
            except ValueError:
                return
            top = msg.maxima.get("FLAT_LIGHT_INTENSITY_VALUE")
            if top and top > 0:
                self._panel_max = top

    def on_number(self, vec: Vector, changes: dict[str, float]) -> None:
        if vec.name == "CCD_EXPOSURE":
            self._start_exposure(changes.get("CCD_EXPOSURE_VALUE", 0.0))
            return
        if vec.name == "CCD_BINNING" and self.f.key == "asi":
            changes["VER_BIN"] = changes.get("HOR_BIN", float(vec["HOR_BIN"].value))  # square
        if vec.name == "CCD_TEMPERATURE":  # the value stays the sensor's temperature
            self.cooler.set(True, changes["CCD_TEMPERATURE_VALUE"])
            self._set_cooler_switch(True)
            self._last_temp = None
            self._set(vec, "Busy")
            return
        if vec.name == "CCD_BINNING":
            frame = self.props["CCD_FRAME"]
            frame["WIDTH"].value, frame["HEIGHT"].value = self.opt.width, self.opt.height
        super().on_number(vec, changes)

    def on_switches(self, vec: Vector, on: list[str], members: list[tuple[str, str]]) -> None:
        if vec.name == "CCD_ABORT_EXPOSURE":
            self._abort.set()
            exposure = self.props["CCD_EXPOSURE"]
            exposure["CCD_EXPOSURE_VALUE"].value = 0.0
            self._set(exposure, "Idle")
            vec["ABORT"].value = False
            self._set(vec, "Ok")
            return
        if vec.name == "CCD_COOLER":
            want = "COOLER_ON" in on
            self.cooler.set(want, self.cooler.setpoint_c)
            self._set_cooler_switch(want)
            return
        if vec.rule == "OneOfMany" and on:
            vec.select(on[0])
        else:
            for name, text in members:
                if vec.has(name):
                    vec[name].value = text == "On"
        if vec.name == "CCD_VIDEO_FORMAT" and on:  # ZWO mirrors the two format vectors
            self.props["CCD_CAPTURE_FORMAT"].select(on[0])
            self._set(self.props["CCD_CAPTURE_FORMAT"], "Ok")
        if vec.name == "CCD_CAPTURE_FORMAT" and on and "CCD_VIDEO_FORMAT" in self.props:
            self.props["CCD_VIDEO_FORMAT"].select(on[0])
            self._set(self.props["CCD_VIDEO_FORMAT"], "Ok")
        self._set(vec, "Ok")

    def _set_cooler_switch(self, on: bool) -> None:
        sw = self.props["CCD_COOLER"]
        sw.select("COOLER_ON" if on else "COOLER_OFF")
        self._set(sw, "Busy" if on else "Idle")

    def on_connect(self) -> None:
        after = base.after_connect(self.f, self.opt.width, self.opt.height,
                                   self.profile.pixel_size_um, max(self.profile.binnings))
        for vec in after:
            self._add(vec)
        if self.f.cooler_switch_default == "COOLER_ON":
            self.cooler.set(True, 0.0)
        for vec in after:
            self._define(vec)

    def on_disconnect(self) -> None:
        """Abort an exposure; the vectors go (built afresh on the next connect)."""
        self._abort.set()
        for vec in self._own():
            self._undefine(vec)
            del self.props[vec.name]

    # ------------------------------------------------------------------ exposures

    def _start_exposure(self, duration_s: float) -> None:
        exposure = self.props["CCD_EXPOSURE"]
        busy = self._exposing is not None and self._exposing.is_alive()
        if busy and not self._abort.is_set():
            self._set(exposure, "Alert", "an exposure is already in progress")
            return
        frame_type = self.props["CCD_FRAME_TYPE"].on() or "FRAME_LIGHT"
        exposure["CCD_EXPOSURE_VALUE"].value = duration_s
        self._set(exposure, "Busy")
        # Each exposure has its own abort flag: an aborted one still winding down never sends.
        self._abort = threading.Event()
        self._exposing = threading.Thread(target=self._expose,
                                          args=(duration_s, frame_type, self._abort),
                                          name="exposure", daemon=True)
        self._exposing.start()

    def poll_interval_s(self) -> float:
        return max(0.01, float(self.props["POLLING_PERIOD"]["PERIOD_MS"].value) / 1000.0)

    def _expose(self, duration_s: float, frame_type: str, abort: threading.Event) -> None:
        clock = self.clock
        start_utc = clock.now()
        temp_start = self.cooler.temperature_c()
        end = clock.monotonic() + duration_s
        while True:
            left = end - clock.monotonic()
            if left <= 0:
                break
            if clock.wait(abort, min(left, self.poll_interval_s() * clock.scale)):
                return  # the abort handler reported Idle
            with self.lock:
                exposure = self.props.get("CCD_EXPOSURE")
                if exposure is None:
                    return
                exposure["CCD_EXPOSURE_VALUE"].value = max(0.0, end - clock.monotonic())
                self._set(exposure)
        with self.lock:
            settings = self._settings()
            binning = int(self.props["CCD_BINNING"]["HOR_BIN"].value)
            fmt = self.props["CCD_CAPTURE_FORMAT"].on()
        data = self.sensor.frame(
            exposure_s=duration_s, temperature_c=0.5 * (temp_start + self.cooler.temperature_c()),
            gain=settings.gain, offset=settings.offset, binning=binning,
            readout_mode=settings.readout, light=self._light())
        if fmt != self.f.raw16:
            data = (data >> 8).astype(np.uint8)
        blob = self._fits(data, duration_s, frame_type, start_utc.strftime("%Y-%m-%dT%H:%M:%S.%f")
                          [:-3], binning, settings, colour_raw=bool(self.f.bayer) and "RAW" in
                          (fmt or ""))
        with self.lock:
            if abort.is_set() or "CCD_EXPOSURE" not in self.props:
                return
            self.out.send(render_blob(self.f.device, "CCD1", "CCD1", blob, ".fits"))
            exposure = self.props["CCD_EXPOSURE"]
            exposure["CCD_EXPOSURE_VALUE"].value = 0.0
            self._set(exposure, "Ok")

    def _settings(self) -> _Applied:
        f = self.f
        gain = self.props[f.gain.vector][f.gain.element].value
        offset = self.props[f.offset.vector][f.offset.element].value
        readout = "normal"
        spec = f.readout
        if spec is not None:
            vec = self.props[spec.vector]
            if spec.kind == "switch":
                mode = vec.on() or spec.default
            else:
                mode = str(round(float(vec[spec.elements[0]].value)))
            readout = "low-noise" if mode == spec.low_noise else "normal"
        return _Applied(round(float(gain)), round(float(offset)), readout, self._mode_label())

    def _mode_label(self) -> str:
        spec = self.f.readout
        if spec is None:
            return ""
        vec = self.props[spec.vector]
        if spec.kind == "switch":
            return vec.on() or spec.default
        return str(round(float(vec[spec.elements[0]].value)))

    def _light(self) -> Illumination | None:
        if self.light is not None:
            return self.light()
        if not self._panel_on or self._panel_level <= 0:
            return None
        return Illumination(PANEL_FLUX_E_PER_S * self._panel_level / self._panel_max)

    def _fits(self, data: np.ndarray, duration_s: float, frame_type: str, date_obs: str,
              binning: int, settings: _Applied, *, colour_raw: bool) -> bytes:
        from astropy.io import fits

        hdu = fits.PrimaryHDU(data)
        h = hdu.header
        short, long_name = _FRAME_NAMES[frame_type]
        pixel = self.profile.pixel_size_um
        h["ROWORDER"] = ("TOP-DOWN", "Row Order")
        h["INSTRUME"] = (self.f.device, "CCD Name")
        h["EXPTIME"] = (duration_s, "Total Exposure Time (s)")
        if frame_type == "FRAME_DARK":
            h["DARKTIME"] = (duration_s, "Total Dark Exposure Time (s)")
        h["CCD-TEMP"] = (round(self.cooler.temperature_c(), 2), "CCD Temperature (Celsius)")
        h["PIXSIZE1"] = (pixel, "Pixel Size 1 (microns)")
        h["PIXSIZE2"] = (pixel, "Pixel Size 2 (microns)")
        h["XBINNING"] = (binning, "Binning factor in width")
        h["YBINNING"] = (binning, "Binning factor in height")
        h["XPIXSZ"] = (pixel * binning, "X binned pixel size in microns")
        h["YPIXSZ"] = (pixel * binning, "Y binned pixel size in microns")
        h["FRAME"] = (short, "Frame Type")
        h["IMAGETYP"] = (long_name, "Frame Type")
        if colour_raw and self.f.bayer:
            h["XBAYROFF"] = (0, "X offset of Bayer array")
            h["YBAYROFF"] = (0, "Y offset of Bayer array")
            h["BAYERPAT"] = (self.f.bayer, "Bayer color pattern")
        h["DATE-OBS"] = (date_obs, "UTC start date of observation")
        if "GAIN" in self.f.fits_extras:
            h["GAIN"] = (float(settings.gain), "Gain")
        if "OFFSET" in self.f.fits_extras:
            h["OFFSET"] = (float(settings.offset), "Offset")
        if "READMODE" in self.f.fits_extras:
            h["READMODE"] = (settings.mode, "Read Mode")
        h["COMMENT"] = "Generated by INDI"
        buf = io.BytesIO()
        hdu.writeto(buf)
        return buf.getvalue()

    # ------------------------------------------------------------------ temperature

    def poll(self) -> None:
        """Report the sensor's temperature and the cooler's power when they changed."""
        temp = self.props["CCD_TEMPERATURE"]
        now = round(self.cooler.temperature_c(), 2)
        target = self.cooler.setpoint_c
        state = temp.state
        if self.cooler.on and target is not None and state == "Busy":
            state = "Ok" if abs(now - target) <= self.f.temp_ok_threshold_c else "Busy"
        if self._last_temp != (now, state):
            self._last_temp = (now, state)
            temp["CCD_TEMPERATURE_VALUE"].value = now
            self._set(temp, state)
        vec_name, element, _ = self.f.cooler_power
        power = self.props[vec_name]
        pct = round(self.cooler.power_pct(), 1) if self.cooler.on else 0.0
        if power[element].value != pct:
            power[element].value = pct
            busy = self.f.key == "asi" and pct > 0
            self._set(power, "Busy" if busy else "Ok")
