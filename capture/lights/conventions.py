"""What a light frame was taken with, from the header and file-name conventions of the
programs that write lights (N.I.N.A., Ekos/INDI, SharpCap, ASIAIR, APT, SGP, calibd).

Every value is read from a list of keywords (the first the writers agree on first), then from
the file name where the header has nothing, validated once (type, range, printable text of a
bounded length) and then trusted. Two sources that disagree (``EXPTIME`` against ``EXPOSURE``,
the header against the file name) make the file *contradictory*; a value nobody gives makes it
*unknown*. Both are reported per file and the file is left out of the plan: nothing is guessed
silently. The one documented derivation, a set-point taken as the sensor temperature rounded to
a whole degree when no set-point keyword is written (INDI writes only ``CCD-TEMP``), is said in
the file's notes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from pathlib import Path
from typing import Any

from calibd.capture import cfa
from calibd.capture.lights.headers import UNREADABLE
from calibd.capture.lights.headers import read_header
from calibd.capture.masters.match import Light
from calibd.capture.textsafe import shown

# Keywords, in order of preference. The first that is present and valid gives the value; the
# others, when present, must agree with it.
EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE")  # seconds (calibd, N.I.N.A., INDI, SGP, MaxIm/SBIG)
GAIN_KEYS = ("GAIN",)
OFFSET_KEYS = ("OFFSET",)
XBIN_KEYS = ("XBINNING", "CCDXBIN")  # CCDXBIN: Sequence Generator Pro
YBIN_KEYS = ("YBINNING", "CCDYBIN")
READOUT_KEYS = ("READOUTM", "READMODE")
SETPOINT_KEYS = ("SET-TEMP",)
SENSOR_KEYS = ("CCD-TEMP", "TEMPERAT")  # TEMPERAT: Sequence Generator Pro
FILTER_KEYS = ("FILTER",)
BAYER_KEYS = ("BAYERPAT",)
TYPE_KEYS = ("IMAGETYP", "FRAME", "FRAMETYP")  # FRAME: INDI's frame type
OTHER_KEYS = ("CAMERAID", "INSTRUME", "CAMNAME", "DATE-OBS")
USED_KEYS = frozenset(EXPOSURE_KEYS + GAIN_KEYS + OFFSET_KEYS + XBIN_KEYS + YBIN_KEYS
                      + READOUT_KEYS + SETPOINT_KEYS + SENSOR_KEYS + FILTER_KEYS + BAYER_KEYS
                      + TYPE_KEYS + OTHER_KEYS)

MAX_TEXT = 64  # characters of a camera, filter or read-out mode name
EXPOSURE_TOL = 1e-3  # s: two exposures closer than this are the same
SENSOR_SETPOINT_WARN_C = 2.0  # sensor this far from its set-point: said in the notes

_LIGHT_TYPES = {"light", "light frame", "lightframe", "object", "science"}
_CALIB_TYPES = {"dark", "dark frame", "bias", "bias frame", "offset", "flat", "flat frame",
                "flat field", "darkflat", "dark flat", "flatdark", "master dark", "master bias",
                "master flat"}


@dataclass
class LightFrame:
    """One light frame as read: its settings (None = unknown), what was derived and why
    (``notes``), and what keeps it out of the plan (``problems``; shown with ``shown``)."""

    path: Path
    camera: str | None = None  # what groups it: CAMERAID, else INSTRUME
    camera_id: str | None = None
    instrument: str | None = None
    exposure_s: float | None = None
    gain: int | None = None
    offset: int | None = None
    binning: int = 1
    readout_mode: str | None = None
    setpoint_c: float | None = None
    sensor_c: float | None = None
    filter: str | None = None
    bayer: str | None = None
    date_obs: str | None = None
    width: int | None = None  # binned pixels, as stored
    height: int | None = None
    bit_depth: int | None = None
    sources: dict[str, str] = field(default_factory=dict)  # value -> where it came from
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None  # not a light (a dark, a flat...): why

    @property
    def usable(self) -> bool:
        return not self.problems and self.skipped is None

    def light(self) -> Light:
        """The match keys (:class:`capture.masters.match.Light`) of this frame: every field of
        :class:`Light`, copied from the field of the same name here (a match key added there
        must be read here too, or this raises AttributeError)."""
        return Light(**{key.name: getattr(self, key.name) for key in fields(Light)})


# File-name tokens (split on "_" and spaces). Sources: ASIAIR names lights like
# ``Light_M31_300.0s_Bin1_2600MM_gain100_20240105-221033_-10.0C_0001.fit`` and masters like
# ``MasterFlat_Stack20_50.0ms_Bin1_2600MC_filter-NoFilter_gain100_20250221_1.6C.xisf``;
# N.I.N.A.'s file pattern tokens ($$EXPOSURETIME$$ s, $$GAIN$$, $$OFFSET$$, $$BINNING$$,
# $$FILTER$$, $$TEMPERATURESETPOINT$$); Ekos ``M31_Light_Ha_300_secs_2024-01-05T22-10-33_001``.
_NUM = r"(\d+(?:\.\d+)?)"
_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("exposure_s", re.compile(rf"^{_NUM}(s|sec|secs)$", re.I)),
    ("exposure_ms", re.compile(rf"^{_NUM}ms$", re.I)),
    ("binning", re.compile(r"^bin-?(\d{1,2})(?:x\d{1,2})?$", re.I)),
    ("gain", re.compile(r"^gain-?(\d{1,6})$", re.I)),
    ("offset", re.compile(r"^offset-?(\d{1,6})$", re.I)),
    ("temperature_c", re.compile(r"^(-?\d{1,3}(?:\.\d+)?)C$")),
    ("temperature_c", re.compile(r"^temp-?(-?\d{1,3}(?:\.\d+)?)C?$", re.I)),
    ("filter", re.compile(r"^filter-([A-Za-z0-9][A-Za-z0-9.+-]{0,31})$", re.I)),
    ("date", re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$")),
    ("date", re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})-(\d{2})-(\d{2}))?$")),
)
_SECS_WORD = re.compile(r"^(secs?|seconds)$", re.I)
_TYPE_WORD = re.compile(r"^(light|dark|flat|bias|darkflat|flatdark)$", re.I)


def from_file_name(name: str) -> tuple[dict[str, Any], list[str]]:
    """Settings encoded in a file name (without folder), and the tokens that were ambiguous."""
    stem = name.rsplit(".", 1)[0]
    tokens = [t for t in re.split(r"[_\s]+", stem) if t]
    found: dict[str, Any] = {}
    clashes: list[str] = []

    def put(key: str, value: Any) -> None:
        if key in found and found[key] != value:
            clashes.append(key)
        found.setdefault(key, value)

    for i, tok in enumerate(tokens):
        if _TYPE_WORD.match(tok) and "frame_type" not in found:
            found["frame_type"] = tok.lower()
            continue
        if _SECS_WORD.match(tok) and i > 0 and re.fullmatch(_NUM, tokens[i - 1]):
            put("exposure_s", float(tokens[i - 1]))  # Ekos: "300_secs"
            continue
        for key, pattern in _TOKENS:
            m = pattern.match(tok)
            if not m:
                continue
            if key == "exposure_ms":
                put("exposure_s", float(m.group(1)) / 1000.0)
            elif key == "date":
                y, mo, d, h, mi, s = (g or "00" for g in m.groups())
                put("date", f"{y}-{mo}-{d}T{h}:{mi}:{s}")
            elif key in ("binning", "gain", "offset"):
                put(key, int(m.group(1)))
            elif key in ("exposure_s", "temperature_c"):
                put(key, float(m.group(1)))
            else:
                put(key, m.group(1))
            break
    return found, clashes


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return None
        else:
            return None
    v = float(value)
    return v if math.isfinite(v) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _whole(value: float | None) -> int | None:
    return int(value) if value is not None and value == int(value) else None


def _pixels(value: Any) -> int | None:
    """An image side (``NAXISn``) in pixels, None unless a whole number from 1 to 1,000,000."""
    n = _whole(_number(value))
    return n if n is not None and 1 <= n <= 1_000_000 else None


class _Reader:
    """Reads one header into one LightFrame, recording contradictions as problems."""

    def __init__(self, frame: LightFrame, header: dict[str, Any]) -> None:
        self.f = frame
        self.h = header

    def number(self, what: str, keys: tuple[str, ...], lo: float, hi: float,
               *, same: float = 0.0) -> float | None:
        chosen: tuple[str, float] | None = None
        for key in keys:
            if key not in self.h:
                continue
            v = _number(self.h[key])
            if v is None or not lo <= v <= hi:
                self.f.notes.append(f"{key} = {shown(self.h[key], 24)} is not a valid {what}: "
                                    "ignored")
                continue
            if chosen is None:
                chosen = (key, v)
            elif abs(chosen[1] - v) > same:
                self.f.problems.append(f"contradictory {what}: {chosen[0]} = {chosen[1]:g} "
                                       f"but {key} = {v:g}")
        if chosen is None:
            return None
        self.f.sources[what] = chosen[0]
        return chosen[1]

    def text(self, what: str, keys: tuple[str, ...]) -> str | None:
        for key in keys:
            v = _text(self.h.get(key))
            if v is None:
                continue
            if len(v) > MAX_TEXT or not v.isprintable():
                self.f.problems.append(f"{key} = {shown(v, 40)} is not a usable {what} "
                                       "(unprintable or too long)")
                return None
            self.f.sources[what] = key
            return v
        return None


def read_light_file(path: Path) -> LightFrame:
    """The light frame ``path`` read through the one bounded header reader
    (:func:`capture.lights.headers.read_header`) and :func:`read_light`. Blocks on file I/O
    only. Raises HeaderError (the header cannot be read: the message says why)."""
    return read_light(path, read_header(path))


def read_light(path: Path, header: dict[str, Any]) -> LightFrame:
    """The settings of the light frame ``path`` from its ``header`` (keyword -> value) and its
    file name. Never raises; see :class:`LightFrame` for what is reported."""
    f = LightFrame(path=path)
    r = _Reader(f, header)
    for key, value in header.items():
        if value is UNREADABLE and key in USED_KEYS:
            f.problems.append(f"{key} is malformed or unprintable: not read")
    named, clashes = from_file_name(path.name)
    for key in clashes:
        f.problems.append(f"the file name gives two different {key.replace('_', ' ')}s")

    kind = r.text("frame type", TYPE_KEYS) or named.get("frame_type")
    if kind is not None:
        low = kind.lower()
        if low in _CALIB_TYPES or (low not in _LIGHT_TYPES and "light" not in low):
            f.skipped = f"a {shown(kind, 24)} frame, not a light"
            return f

    f.exposure_s = r.number("exposure", EXPOSURE_KEYS, 1e-6, 86400.0, same=EXPOSURE_TOL)
    gain = r.number("gain", GAIN_KEYS, 0, 100000)
    offset = r.number("offset", OFFSET_KEYS, 0, 100000)
    xbin = r.number("binning", XBIN_KEYS, 1, 16)
    ybin = r.number("y binning", YBIN_KEYS, 1, 16)
    setpoint = r.number("set-point", SETPOINT_KEYS, -100, 60)
    sensor = r.number("sensor temperature", SENSOR_KEYS, -100, 60, same=0.5)
    f.readout_mode = r.text("read-out mode", READOUT_KEYS)
    f.filter = r.text("filter", FILTER_KEYS)
    f.bayer = r.text("Bayer pattern", BAYER_KEYS)
    f.camera_id = r.text("camera id", ("CAMERAID",))
    f.instrument = r.text("camera", ("INSTRUME", "CAMNAME"))
    f.date_obs = r.text("date", ("DATE-OBS",))
    bits = _number(header.get("BITDEPTH"))
    f.bit_depth = _whole(bits)
    f.width = _pixels(header.get("NAXIS1"))
    f.height = _pixels(header.get("NAXIS2"))
    if f.bayer is not None and f.height is not None:
        # The phase of the data as stored (XBAYROFF/YBAYROFF and ROWORDER folded in, as Siril
        # reads them): N.I.N.A. writes an ASCOM camera's SensorType with the offsets beside it.
        f.bayer = cfa.header_pattern(header, f.height) or f.bayer

    if gain is not None and _whole(gain) is None:
        f.problems.append(f"GAIN = {gain:g} is not a whole number")
    if offset is not None and _whole(offset) is None:
        f.problems.append(f"OFFSET = {offset:g} is not a whole number")
    if xbin is not None and ybin is not None and xbin != ybin:
        f.problems.append(f"unequal binning {xbin:g}x{ybin:g} (not matched)")

    # The file name fills what the header lacks, and must agree with what it has.
    def merge(what: str, have: float | None, key: str, tol: float = 0.0) -> float | None:
        v = named.get(key)
        if v is None:
            return have
        if have is None:
            f.sources[what] = "file name"
            return float(v)
        if abs(have - float(v)) > tol:
            f.problems.append(f"contradictory {what}: the header says {have:g}, the file name "
                              f"{float(v):g}")
        return have

    f.exposure_s = merge("exposure", f.exposure_s, "exposure_s", EXPOSURE_TOL)
    gain = merge("gain", gain, "gain")
    offset = merge("offset", offset, "offset")
    xbin = merge("binning", xbin, "binning")
    f.gain, f.offset = _whole(gain), _whole(offset)
    f.binning = _whole(xbin) or 1
    if f.filter is None and named.get("filter"):
        f.filter, f.sources["filter"] = str(named["filter"]), "file name"
    elif f.filter is not None and named.get("filter") and named["filter"] != f.filter:
        f.problems.append(f"contradictory filter: the header says {shown(f.filter, 32)}, the "
                          f"file name {shown(named['filter'], 32)}")
    if f.date_obs is None and named.get("date"):
        f.date_obs, f.sources["date"] = str(named["date"]), "file name"

    if sensor is None and named.get("temperature_c") is not None:
        sensor = float(named["temperature_c"])
        f.sources["sensor temperature"] = "file name"
    f.sensor_c = sensor
    if setpoint is not None:
        f.setpoint_c = setpoint
        if sensor is not None and abs(sensor - setpoint) > SENSOR_SETPOINT_WARN_C:
            f.notes.append(f"the sensor was at {sensor:g} °C, {abs(sensor - setpoint):.1f} °C "
                           f"from its set-point {setpoint:g} °C")
    elif sensor is not None:
        f.setpoint_c = float(round(sensor))
        f.notes.append(f"no set-point keyword: set-point taken as the sensor temperature "
                       f"{sensor:g} °C rounded to {f.setpoint_c:g} °C")

    f.camera = f.camera_id or f.instrument
    for what, value in (("exposure (EXPTIME/EXPOSURE or the file name)", f.exposure_s),
                        ("gain (GAIN or the file name)", f.gain),
                        ("set-point or sensor temperature (SET-TEMP/CCD-TEMP)", f.setpoint_c),
                        ("camera (CAMERAID/INSTRUME)", f.camera)):
        if value is None:
            f.problems.append(f"unknown {what}")
    if f.offset is None and not f.problems:
        f.notes.append("no OFFSET: the camera's configured offset is assumed")
    return f
