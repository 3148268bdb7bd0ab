"""The Alpaca members of each device type, declared once, and the request validation that uses
them (the "is this request well formed" half of the ASCOM decision order).

Every member of the ASCOM interfaces the server presents is listed here with the HTTP methods it
takes and, per method, its parameter names and types, whether or not this server implements it.
:func:`validate` runs before any device code, in this order: member known for the device type,
HTTP method allowed, each declared parameter present and parsable (names exact for PUT form
parameters, any casing for GET query parameters; integers within Int32). A failure is a
:class:`BadRequest` (HTTP 400). Only a request that passes reaches the device, which then answers
NotImplemented, NotConnected or executes (in that order, see :mod:`.device`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from calibd.simulators.alpaca_server.protocol import BadRequest
from calibd.simulators.alpaca_server.protocol import Params

Kind = Literal["int32", "double", "bool", "string"]
Param = tuple[str, Kind]


@dataclass(frozen=True)
class Member:
    """The methods one member accepts: ``get``/``put`` are the parameters each takes (as
    declared names and types), or None when the member does not accept that HTTP method."""

    get: tuple[Param, ...] | None = None
    put: tuple[Param, ...] | None = None


READ = Member(get=())


def read_write(name: str, kind: Kind) -> Member:
    """A read/write property: GET without parameters, PUT with the property's own name."""
    return Member(get=(), put=((name, kind),))


def method(*params: Param) -> Member:
    """A method (PUT) with these parameters."""
    return Member(put=params)


def read_only(names: str) -> dict[str, Member]:
    """Read-only properties (GET without parameters), named by a space-separated list."""
    return dict.fromkeys(names.split(), READ)


_COMMON: dict[str, Member] = {
    "action": method(("Action", "string"), ("Parameters", "string")),
    "commandblind": method(("Command", "string"), ("Raw", "string")),
    "commandbool": method(("Command", "string"), ("Raw", "string")),
    "commandstring": method(("Command", "string"), ("Raw", "string")),
    "connect": method(),
    "connected": read_write("Connected", "bool"),
    "connecting": READ,
    "description": READ,
    "devicestate": READ,
    "disconnect": method(),
    "driverinfo": READ,
    "driverversion": READ,
    "interfaceversion": READ,
    "name": READ,
    "supportedactions": READ,
}

_CAMERA_READ = (
    "bayeroffsetx bayeroffsety camerastate cameraxsize cameraysize canabortexposure "
    "canasymmetricbin canfastreadout cangetcoolerpower canpulseguide cansetccdtemperature "
    "canstopexposure ccdtemperature coolerpower electronsperadu exposuremax exposuremin "
    "exposureresolution fullwellcapacity gainmax gainmin gains hasshutter heatsinktemperature "
    "imagearray imagearrayvariant imageready ispulseguiding lastexposureduration "
    "lastexposurestarttime maxadu maxbinx maxbiny offsetmax offsetmin offsets percentcompleted "
    "pixelsizex pixelsizey readoutmodes sensorname sensortype"
)
_CAMERA_READ_WRITE: tuple[Param, ...] = (
    ("BinX", "int32"),
    ("BinY", "int32"),
    ("CoolerOn", "bool"),
    ("FastReadout", "bool"),
    ("Gain", "int32"),
    ("NumX", "int32"),
    ("NumY", "int32"),
    ("Offset", "int32"),
    ("ReadoutMode", "int32"),
    ("SetCCDTemperature", "double"),
    ("StartX", "int32"),
    ("StartY", "int32"),
    ("SubExposureDuration", "double"),
)
_CAMERA: dict[str, Member] = {
    **read_only(_CAMERA_READ),
    **{name.lower(): read_write(name, kind) for name, kind in _CAMERA_READ_WRITE},
    "abortexposure": method(),
    "pulseguide": method(("Direction", "int32"), ("Duration", "int32")),
    "startexposure": method(("Duration", "double"), ("Light", "bool")),
    "stopexposure": method(),
}

_FILTER_WHEEL: dict[str, Member] = {
    "focusoffsets": READ,
    "names": READ,
    "position": read_write("Position", "int32"),
}

_COVER_CALIBRATOR: dict[str, Member] = {
    **read_only(
        "brightness calibratorchanging calibratorstate covermoving coverstate maxbrightness"
    ),
    "calibratoroff": method(),
    "calibratoron": method(("Brightness", "int32")),
    "closecover": method(),
    "haltcover": method(),
    "opencover": method(),
}

_SAFETY_MONITOR: dict[str, Member] = {"issafe": READ}

_TELESCOPE: dict[str, Member] = {
    **read_only(
        "alignmentmode altitude aperturearea aperturediameter athome atpark azimuth canfindhome "
        "canpark canpulseguide cansetdeclinationrate cansetguiderates cansetpark cansetpierside "
        "cansetrightascensionrate cansettracking canslew canslewaltaz canslewaltazasync "
        "canslewasync cansync cansyncaltaz canunpark declination equatorialsystem focallength "
        "ispulseguiding rightascension siderealtime slewing trackingrates"
    ),
    "declinationrate": read_write("DeclinationRate", "double"),
    "doesrefraction": read_write("DoesRefraction", "bool"),
    "guideratedeclination": read_write("GuideRateDeclination", "double"),
    "guideraterightascension": read_write("GuideRateRightAscension", "double"),
    "rightascensionrate": read_write("RightAscensionRate", "double"),
    "sideofpier": read_write("SideOfPier", "int32"),
    "siteelevation": read_write("SiteElevation", "double"),
    "sitelatitude": read_write("SiteLatitude", "double"),
    "sitelongitude": read_write("SiteLongitude", "double"),
    "slewsettletime": read_write("SlewSettleTime", "int32"),
    "targetdeclination": read_write("TargetDeclination", "double"),
    "targetrightascension": read_write("TargetRightAscension", "double"),
    "tracking": read_write("Tracking", "bool"),
    "trackingrate": read_write("TrackingRate", "int32"),
    "utcdate": read_write("UTCDate", "string"),
    "axisrates": Member(get=(("Axis", "int32"),)),
    "canmoveaxis": Member(get=(("Axis", "int32"),)),
    "destinationsideofpier": Member(get=(("RightAscension", "double"),
                                         ("Declination", "double"))),
    "abortslew": method(),
    "findhome": method(),
    "moveaxis": method(("Axis", "int32"), ("Rate", "double")),
    "park": method(),
    "pulseguide": method(("Direction", "int32"), ("Duration", "int32")),
    "setpark": method(),
    "slewtoaltaz": method(("Azimuth", "double"), ("Altitude", "double")),
    "slewtoaltazasync": method(("Azimuth", "double"), ("Altitude", "double")),
    "slewtocoordinates": method(("RightAscension", "double"), ("Declination", "double")),
    "slewtocoordinatesasync": method(("RightAscension", "double"), ("Declination", "double")),
    "slewtotarget": method(),
    "slewtotargetasync": method(),
    "synctoaltaz": method(("Azimuth", "double"), ("Altitude", "double")),
    "synctocoordinates": method(("RightAscension", "double"), ("Declination", "double")),
    "synctotarget": method(),
    "unpark": method(),
}

_DOME: dict[str, Member] = {
    **read_only(
        "altitude athome atpark azimuth canfindhome canpark cansetaltitude cansetazimuth "
        "cansetpark cansetshutter canslave cansyncazimuth shutterstatus slewing"
    ),
    "slaved": read_write("Slaved", "bool"),
    "abortslew": method(),
    "closeshutter": method(),
    "findhome": method(),
    "openshutter": method(),
    "park": method(),
    "setpark": method(),
    "slewtoaltitude": method(("Altitude", "double")),
    "slewtoazimuth": method(("Azimuth", "double")),
    "synctoazimuth": method(("Azimuth", "double")),
}

_SENSOR_NAME = Member(get=(("SensorName", "string"),))
_OBSERVING_CONDITIONS: dict[str, Member] = {
    **read_only(
        "cloudcover dewpoint humidity pressure rainrate skybrightness skyquality "
        "skytemperature starfwhm temperature winddirection windgust windspeed"
    ),
    "averageperiod": read_write("AveragePeriod", "double"),
    "refresh": method(),
    "sensordescription": _SENSOR_NAME,
    "timesincelastupdate": _SENSOR_NAME,
}

#: device type (URL name) -> member (URL name) -> declaration.
MEMBERS: Mapping[str, Mapping[str, Member]] = {
    device_type: {**_COMMON, **specific}
    for device_type, specific in (
        ("camera", _CAMERA),
        ("covercalibrator", _COVER_CALIBRATOR),
        ("dome", _DOME),
        ("filterwheel", _FILTER_WHEEL),
        ("observingconditions", _OBSERVING_CONDITIONS),
        ("safetymonitor", _SAFETY_MONITOR),
        ("telescope", _TELESCOPE),
    )
}


def validate(device_type: str, verb: str, member: str, params: Params) -> None:
    """Check one device request against the declarations before any device code runs.

    ``verb`` is "GET" or "PUT"; ``params`` are the query (GET) or form (PUT) parameters. Raises
    BadRequest: member unknown for ``device_type``, method not accepted by the member, declared
    parameter missing (PUT names are matched exactly) or not of its type (Int32 range included).
    """
    declared = MEMBERS.get(device_type, {}).get(member)
    if declared is None:
        raise BadRequest(f"{device_type} has no member {member!r}")
    expected = declared.get if verb == "GET" else declared.put
    if expected is None:
        raise BadRequest(f"{device_type}/{member} does not accept HTTP {verb}")
    for name, kind in expected:
        if kind == "int32":
            params.integer(name)
        elif kind == "double":
            params.number(name)
        elif kind == "bool":
            params.boolean(name)
        else:
            params.text(name)
