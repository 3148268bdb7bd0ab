"""The property sets of the real INDI camera drivers the doubles imitate, as data.

Each :class:`DoubleFamily` says where the driver keeps gain, offset, the read-out mode, the cooler
switch and power, which capture formats it offers, what it adds to FITS headers, and which extra
vectors it defines after CONNECT. Everything was read from the drivers' sources; ``source`` names
the file and the revision followed. Element names the sources fill from the vendor SDK at run
time (ZWO and Player One ``CCD_CONTROLS``) use the names those SDKs report for real cameras.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from calibd.simulators.indi_doubles.protocol import Element
from calibd.simulators.indi_doubles.protocol import Vector

INDI_3RDPARTY = "indilib/indi-3rdparty"


@dataclass(frozen=True)
class Control:
    """A number element the camera is driven by: ``vector.element`` in [lo, hi]."""

    vector: str
    element: str
    lo: float
    hi: float
    default: float


@dataclass(frozen=True)
class ReadoutSpec:
    """How the driver offers read-out modes.

    ``kind``: ``number`` (one element holding the mode index, QHY ``READ_MODE.MODE``),
    ``switch`` (one switch per mode, Touptek ``TC_CONVERSION_GAIN``, Player One ``SENSOR_MODE``)
    or ``control`` (a 0/1 number element inside ``CCD_CONTROLS``, ZWO ``HighSpeedMode``).
    ``low_noise`` names the mode the sensor model treats as its low-noise read-out.
    """

    kind: str
    vector: str
    elements: tuple[str, ...]
    default: str
    low_noise: str | None = None


@dataclass(frozen=True, kw_only=True)
class DoubleFamily:
    key: str
    executable: str
    driver_name: str  # DRIVER_INFO.DRIVER_NAME (the driver's default device name)
    model: str  # the camera's name as the SDK gives it
    camera_id: str | None = None  # the camera's name in the device name, when not ``model``
    source: str
    bit_depth: int
    unity_gain: int
    gain: Control
    offset: Control
    capture_formats: tuple[str, ...]
    raw16: str  # the 16-bit raw element of CCD_CAPTURE_FORMAT
    readout: ReadoutSpec | None
    fits_extras: tuple[str, ...]  # GAIN, OFFSET, READMODE: keywords the driver writes
    cooler_switch_perm: str = "wo"  # "wo" or "rw"
    cooler_switch_default: str = "COOLER_OFF"  # or "COOLER_ON"
    cooler_power: tuple[str, str, str] = ("CCD_COOLER_POWER", "CCD_COOLER_VALUE", "ro")
    bayer: str | None = None  # CFA pattern of a colour sensor
    transfer_formats: tuple[str, ...] = ("FORMAT_FITS", "FORMAT_NATIVE", "FORMAT_XISF")
    extra: tuple[Callable[[DoubleFamily], Vector], ...] = field(default_factory=tuple)
    exposure_range_s: tuple[float, float] = (0.000032, 3600.0)
    setpoint_range_c: tuple[float, float] = (-50.0, 30.0)
    temp_ok_threshold_c: float = 0.25

    @property
    def device(self) -> str:
        """The device name: each driver names a camera's device its default name, a space, and
        the camera's name."""
        return f"{self.driver_name} {self.camera_id or self.model}"


def _num(name: str, label: str, group: str, perm: str,
         *elements: tuple[str, float, float, float, float]) -> Vector:
    return Vector("number", name, label, group, perm,
                  [Element(e, e, v, lo, hi, step) for e, v, lo, hi, step in elements])


def _switch(name: str, group: str, perm: str, on: str, *names: str,
            rule: str = "OneOfMany") -> Vector:
    return Vector("switch", name, name, group, perm, [Element(n, n, n == on) for n in names],
                  rule=rule)


def _text(name: str, group: str, **values: str) -> Vector:
    return Vector("text", name, name, group, "ro", [Element(k, k, v) for k, v in values.items()])


def _controls(f: DoubleFamily, *more: tuple[str, float, float, float, float]) -> Vector:
    """``CCD_CONTROLS`` holding gain and offset (ZWO, Player One) and/or other SDK controls."""
    items: list[tuple[str, float, float, float, float]] = []
    for c in (f.gain, f.offset):
        if c.vector == "CCD_CONTROLS":
            items.append((c.element, c.default, c.lo, c.hi, 1.0))
    items.extend(more)
    return _num("CCD_CONTROLS", "Controls", "Controls", "rw", *items)


def _control(which: str, label: str, group: str) -> Callable[[DoubleFamily], Vector]:
    """The family's gain or offset (``which``) as a vector of its own (QHY, Touptek offset)."""
    def build(f: DoubleFamily) -> Vector:
        c: Control = getattr(f, which)
        return _num(c.vector, label, group, "rw", (c.element, c.default, c.lo, c.hi, 1))
    return build


def _readout_switch(group: str) -> Callable[[DoubleFamily], Vector]:
    """The read-out mode switch vector the family's :class:`ReadoutSpec` describes."""
    def build(f: DoubleFamily) -> Vector:
        if f.readout is None:
            raise ValueError(f"{f.key}: no read-out spec")
        return _switch(f.readout.vector, group, "rw", f.readout.default, *f.readout.elements)
    return build


def _toggle(name: str, group: str) -> Callable[[DoubleFamily], Vector]:
    """An INDI_ENABLED / INDI_DISABLED switch, disabled."""
    return lambda f: _switch(name, group, "rw", "INDI_DISABLED", "INDI_ENABLED", "INDI_DISABLED")


def _adc_depth(f: DoubleFamily) -> Vector:
    return _num("ADC_DEPTH", "ADC Depth", "Image Info", "ro", ("BITS", f.bit_depth, 0, 32, 1))


def _flip(f: DoubleFamily) -> Vector:
    return _switch("FLIP", "Controls", "rw", "", "FLIP_HORIZONTAL", "FLIP_VERTICAL",
                   rule="AnyOfMany")


# --- indi_asi_ccd ------------------------------------------------------------------------------
def _asi_extra() -> tuple[Callable[[DoubleFamily], Vector], ...]:
    return (
        lambda f: _controls(f, ("BandWidth", 40, 40, 100, 6), ("HighSpeedMode", 0, 0, 1, 1),
                            ("WB_R", 52, 1, 99, 9.8), ("WB_B", 95, 1, 99, 9.8)),
        lambda f: _switch("CCD_CONTROLS_MODE", "Controls", "rw", "", "AUTO_BandWidth",
                          rule="AnyOfMany"),
        lambda f: _switch("CCD_VIDEO_FORMAT", "Controls", "rw", f.raw16, *f.capture_formats),
        _flip,
        lambda f: _num("BLINK", "Blink", "Controls", "rw", ("BLINK_COUNT", 0, 0, 100, 1),
                       ("BLINK_DURATION", 0, 0, 60, 0.001)),
        _adc_depth,
        lambda f: _text("SDK", "General Info", VERSION="1.37"),
        _toggle("USB_RESET", "Options"),
    )


ASI = DoubleFamily(
    key="asi",
    executable="indi_asi_ccd",
    driver_name="ZWO CCD",
    model="ASI294MM Pro",  # the SDK's name without its "ZWO " prefix
    source=f"{INDI_3RDPARTY} indi-asi/asi_base.cpp @ 0761d02dc1f6 (initProperties, "
           "updateProperties, setupParams, createControls, temperatureTimerTimeout, grabImage, "
           "addFITSKeywords)",
    bit_depth=14,
    unity_gain=120,
    gain=Control("CCD_CONTROLS", "Gain", 0, 570, 200),
    offset=Control("CCD_CONTROLS", "Offset", 0, 80, 8),
    capture_formats=("ASI_IMG_RAW8", "ASI_IMG_RAW16"),
    raw16="ASI_IMG_RAW16",
    readout=ReadoutSpec("control", "CCD_CONTROLS", ("HighSpeedMode",), "0", low_noise="0"),
    fits_extras=("GAIN", "OFFSET"),
    # Field dumps of this driver show an element with an empty name in CCD_TRANSFER_FORMAT.
    transfer_formats=("FORMAT_FITS", "FORMAT_NATIVE", "FORMAT_XISF", ""),
    extra=_asi_extra(),
    exposure_range_s=(0.000032, 2000.0),
)


# --- indi_qhy_ccd ------------------------------------------------------------------------------
QHY = DoubleFamily(
    key="qhy",
    executable="indi_qhy_ccd",
    driver_name="QHY CCD",
    model="QHY268M",
    camera_id="QHY268M-3a5c1d",  # the SDK's camera id (model-serial)
    source=f"{INDI_3RDPARTY} indi-qhy/qhy_ccd.cpp @ 00835ed6e965 (initProperties, "
           "updateProperties, ISGetProperties); capture-format element names not in the "
           "field notes, INDI_MONO_16 assumed",
    bit_depth=16,
    unity_gain=26,
    gain=Control("CCD_GAIN", "GAIN", 0, 100, 26),
    offset=Control("CCD_OFFSET", "OFFSET", 0, 255, 30),
    cooler_switch_perm="rw",
    capture_formats=("INDI_MONO_8", "INDI_MONO_16"),
    raw16="INDI_MONO_16",
    readout=ReadoutSpec("number", "READ_MODE", ("MODE",), "0", low_noise="1"),
    fits_extras=("GAIN", "OFFSET", "READMODE"),
    extra=(
        _control("gain", "Gain", "Main Control"),
        _control("offset", "Offset", "Main Control"),
        lambda f: _num("READ_MODE", "Read Mode", "Main Control", "rw", ("MODE", 0, 0, 3, 1)),
        lambda f: _switch("CCD_COOLER_MODE", "Main Control", "ro", "COOLER_AUTOMATIC",
                          "COOLER_AUTOMATIC", "COOLER_MANUAL"),
        lambda f: _num("USB_TRAFFIC", "USB Traffic", "Main Control", "rw",
                       ("TRAFFIC", 20, 0, 60, 3)),
        lambda f: _num("USB_BUFFER", "USB Buffer", "Main Control", "rw",
                       ("BUFFER", 512, 512, 4096, 512)),
        lambda f: _num("CCD_HUMIDITY", "Humidity", "Main Control", "ro",
                       ("HUMIDITY", 12.5, -100, 1000, 0.1)),
        lambda f: _switch("CCD_AMP_GLOW", "Main Control", "rw", "AMP_AUTO", "AMP_AUTO",
                          "AMP_ON", "AMP_OFF"),
        _toggle("OVERSCAN_MODE", "Main Control"),
        lambda f: _text("SDK_VERSION", "General Info", VERSION="24.12.26"),
    ),
    exposure_range_s=(0.000001, 3600.0),
)


# --- indi_toupcam (toupbase) -------------------------------------------------------------------
TOUPTEK = DoubleFamily(
    key="touptek",
    executable="indi_toupcam_ccd",
    driver_name="Toupcam",
    model="ATR585M",
    source=f"{INDI_3RDPARTY} indi-toupbase/indi_toupbase.cpp @ 00a034da9578 (initProperties, "
           "updateProperties, Connect, setupParams)",
    bit_depth=12,
    unity_gain=100,
    gain=Control("CCD_CONTROLS", "Gain", 100, 5000, 100),
    offset=Control("CCD_OFFSET", "OFFSET", 0, 255, 0),
    cooler_switch_default="COOLER_ON",
    cooler_power=("CCD_COOLER_POWER", "COOLER_POWER", "ro"),
    capture_formats=("INDI_MONO_8", "INDI_MONO_16"),
    raw16="INDI_MONO_16",
    readout=ReadoutSpec("switch", "TC_CONVERSION_GAIN", ("GAIN_LOW", "GAIN_HIGH", "GAIN_HDR"),
                        "GAIN_LOW", low_noise="GAIN_HIGH"),
    fits_extras=(),
    extra=(
        lambda f: _controls(f, ("Contrast", 0, -255, 255, 1), ("Brightness", 0, -255, 255, 1),
                            ("Gamma", 100, 20, 180, 1), ("Speed", 0, 0, 3, 1),
                            ("FPS Limit", 0, 0, 63, 1)),
        _control("offset", "Offset", "Control"),
        lambda f: _switch("CCD_BINNING_MODE", "Image Settings", "wo", "TC_BINNING_ADD",
                          "TC_BINNING_AVG", "TC_BINNING_ADD"),
        lambda f: _num("CCD_BLACK_BALANCE", "Black Balance", "Control", "rw",
                       ("TC_BLACK", 0, 0, 255, 1)),
        lambda f: _num("CCD_LEVEL_RANGE", "Level Range", "Control", "rw",
                       ("TC_LO", 0, 0, 255, 1), ("TC_HI", 255, 0, 255, 1)),
        _readout_switch("Control"),
        _toggle("TC_LOW_NOISE", "Control"),
        _toggle("TC_HIGHFULLWELL", "Control"),
        lambda f: _switch("TC_FAN_SPEED", "Control", "rw", "FAN_SPEED1", "INDI_DISABLED",
                          "FAN_SPEED1", "FAN_SPEED2", "FAN_SPEED3"),
        lambda f: _text("CAMERA", "General Info", MODEL=f.model, PRODUCTIONDATE="20240611",
                        SN="TP24061100417", FIRMWAREVERSION="3.1.7", HARDWAREVERSION="3.1",
                        FPGAVERSION="1.6", REVISION="1"),
        lambda f: _text("SDK", "General Info", VERSION="57.26598"),
        _adc_depth,
    ),
    exposure_range_s=(0.000244, 3600.0),
)


# --- indi_playerone_ccd ------------------------------------------------------------------------
PLAYERONE = DoubleFamily(
    key="playerone",
    executable="indi_playerone_ccd",
    driver_name="PlayerOne CCD",
    model="Ares-C PRO",
    source=f"{INDI_3RDPARTY} indi-playerone/playerone_base.cpp @ f53fe12fe47d "
           "(as summarised in the field notes' table: CCD_CONTROLS, SENSOR_MODE, POA_* formats, "
           "ADC_DEPTH, FLIP)",
    bit_depth=14,
    unity_gain=120,
    gain=Control("CCD_CONTROLS", "Gain", 0, 600, 120),
    offset=Control("CCD_CONTROLS", "Offset", 0, 200, 12),
    capture_formats=("POA_RAW8", "POA_RGB24", "POA_RAW16", "POA_MONO8"),
    raw16="POA_RAW16",
    readout=ReadoutSpec("switch", "SENSOR_MODE", ("MODE_0", "MODE_1"), "MODE_0",
                        low_noise="MODE_1"),
    fits_extras=("GAIN", "OFFSET"),
    bayer="RGGB",
    extra=(
        lambda f: _controls(f, ("USB Bandwidth Limit", 100, 35, 100, 1)),
        _readout_switch("Controls"),
        _flip,
        _adc_depth,
    ),
)

FAMILIES: dict[str, DoubleFamily] = {f.key: f for f in (ASI, QHY, TOUPTEK, PLAYERONE)}
