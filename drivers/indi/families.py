"""What calibd knows about the INDI camera drivers people use, one table per driver family.

INDI has no standard gain or offset property (not even in INDI 2.2): each driver defines its own,
and read-out modes, cooler power, the 16-bit raw capture format and the ADC depth differ too.
:func:`detect` picks the family from the properties the device *defines* (never from its name
alone): the first family whose ``markers`` are all defined wins, so the more specific families
come first. Every location is ``(vector, element)``; element names inside ``CCD_CONTROLS`` of
ZWO and Player One come from the vendor SDK at run time, so gain/offset there are looked up by
name and missing elements simply mean "not offered".

Sources (read, not copied): indilib/indi-3rdparty ``indi-asi/asi_base.cpp``,
``indi-qhy/qhy_ccd.cpp``, ``indi-toupbase/indi_toupbase.cpp``, ``indi-playerone/playerone_base.cpp``
and libindi's ``ccd_simulator.cpp``; the README's hardware section has the same table for users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Where = tuple[str, str]  # (vector, element)

COOLER_POWER: Where = ("CCD_COOLER_POWER", "CCD_COOLER_VALUE")  # INDI's standard property
ADC_DEPTH: Where = ("ADC_DEPTH", "BITS")  # the ADC depth of the ZWO, Player One, ToupTek drivers


@dataclass(frozen=True)
class ReadoutModes:
    """How a family offers read-out modes.

    ``switch``: one switch element per mode in ``vector`` (mode names are the element names);
    ``number``: ``vector.element`` holds the mode index (names are ``"0"``, ``"1"``, ...);
    ``flag``: a 0/1 number ``vector.element`` (names are ``names[0]`` for 0, ``names[1]`` for 1).
    """

    kind: str
    vector: str
    element: str = ""
    names: tuple[str, str] = ("0", "1")


@dataclass(frozen=True, kw_only=True)
class Family:
    """One INDI driver family. ``model``: where the camera model is, ``("text", vector,
    element)``, ``("prefix", driver-name-prefix[, serial-separator])`` (the device name minus
    the driver's own name, e.g. ``"ZWO CCD ASI294MM Pro"`` -> ``"ASI294MM Pro"``, cut before the
    last separator when the name ends in a serial number) or ``("driver",)`` (DRIVER_NAME).
    ``cooler_power`` and ``bit_depth`` default to where most families have them
    (:data:`COOLER_POWER`, :data:`ADC_DEPTH`); a family states only where it differs. None
    (for gain, offset and cooler power) means: try the generic places."""

    name: str
    markers: tuple[str, ...]  # vectors (or "VECTOR.ELEMENT") that identify the family
    gain: Where | None
    offset: Where | None
    cooler_power: Where | None = COOLER_POWER
    readout: ReadoutModes | None
    raw16: tuple[str, ...]  # CCD_CAPTURE_FORMAT elements that give 16-bit raw data
    bit_depth: Where | None = ADC_DEPTH
    model: tuple[str, ...]
    drivers: str  # the executables, for messages and the README


FAMILIES: tuple[Family, ...] = (
    Family(
        name="zwo",
        markers=("CCD_CONTROLS.Gain", "CCD_VIDEO_FORMAT", "BLINK"),
        gain=("CCD_CONTROLS", "Gain"),
        offset=("CCD_CONTROLS", "Offset"),
        readout=ReadoutModes("flag", "CCD_CONTROLS", "HighSpeedMode", ("normal", "high-speed")),
        raw16=("ASI_IMG_RAW16",),
        model=("prefix", "ZWO CCD "),
        drivers="indi_asi_ccd, indi_asi_single_ccd",
    ),
    Family(
        name="playerone",
        markers=("CCD_CONTROLS.Gain", "SENSOR_MODE"),
        gain=("CCD_CONTROLS", "Gain"),
        offset=("CCD_CONTROLS", "Offset"),
        readout=ReadoutModes("switch", "SENSOR_MODE"),
        raw16=("POA_RAW16",),
        model=("prefix", "PlayerOne CCD "),
        drivers="indi_playerone_ccd, indi_playerone_single_ccd",
    ),
    Family(
        name="touptek",
        markers=("CCD_CONTROLS.Gain", "CCD_OFFSET.OFFSET", "CCD_LEVEL_RANGE"),
        gain=("CCD_CONTROLS", "Gain"),
        offset=("CCD_OFFSET", "OFFSET"),
        cooler_power=("CCD_COOLER_POWER", "COOLER_POWER"),
        readout=ReadoutModes("switch", "TC_CONVERSION_GAIN"),
        raw16=("INDI_MONO_16", "INDI_RAW"),
        model=("text", "CAMERA", "MODEL"),
        drivers="indi_toupcam_ccd, indi_altair_ccd, indi_omegonprocam_ccd, indi_bressercam_ccd, "
                "indi_mallincam_ccd, indi_ogmacam_ccd, indi_starshootg_ccd, indi_tscam_ccd, "
                "indi_nncam_ccd, indi_meadecam_ccd, indi_svbonycam_ccd",
    ),
    Family(
        name="qhy",
        markers=("CCD_GAIN.GAIN", "USB_BUFFER"),
        gain=("CCD_GAIN", "GAIN"),
        offset=("CCD_OFFSET", "OFFSET"),
        readout=ReadoutModes("number", "READ_MODE", "MODE"),
        raw16=("INDI_MONO_16", "INDI_RAW"),
        bit_depth=None,
        model=("prefix", "QHY CCD ", "-"),  # "QHY CCD QHY268M-3a5c1d": the SDK's id
        drivers="indi_qhy_ccd",
    ),
    Family(
        name="simulator",
        markers=("CCD_GAIN.GAIN", "SIMULATOR_SETTINGS"),
        gain=("CCD_GAIN", "GAIN"),
        offset=("CCD_OFFSET", "OFFSET"),
        cooler_power=None,
        readout=None,
        raw16=("INDI_MONO",),
        bit_depth=("CCD_INFO", "CCD_BITSPERPIXEL"),
        model=("driver",),
        drivers="indi_simulator_ccd",
    ),
)

# A device that matches no family: try the usual places.
GENERIC = Family(
    name="generic",
    markers=(),
    gain=None,
    offset=None,
    cooler_power=None,
    readout=None,
    raw16=("INDI_MONO_16", "INDI_RAW", "ASI_IMG_RAW16", "POA_RAW16"),
    model=("driver",),
    drivers="any other INDI::CCD driver",
)
GENERIC_GAIN: tuple[Where, ...] = (("CCD_GAIN", "GAIN"), ("CCD_CONTROLS", "Gain"))
GENERIC_OFFSET: tuple[Where, ...] = (("CCD_OFFSET", "OFFSET"), ("CCD_CONTROLS", "Offset"))
GENERIC_POWER: tuple[Where, ...] = (COOLER_POWER, ("CCD_COOLER_POWER", "COOLER_POWER"))


def detect(has: Callable[[str, str | None], bool]) -> Family:
    """The family whose markers the device defines. ``has(vector, element_or_None)`` answers
    from the device's current properties."""
    for family in FAMILIES:
        if all(_defined(has, marker) for marker in family.markers):
            return family
    return GENERIC


def _defined(has: Callable[[str, str | None], bool], marker: str) -> bool:
    vector, _, element = marker.partition(".")
    return has(vector, element or None)
