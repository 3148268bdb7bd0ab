"""The drivers' small Bayer table: how each protocol's pattern becomes the ``BAYERPAT`` of a frame.

A pattern is the FITS ``BAYERPAT`` string: the colours of the 2x2 cell at the image's first pixel,
row by row, row 0 at the top (calibd's images are top-down). Drivers cannot import the core's
``capture.cfa``; this is the part of it they need (the phases and the shift by an origin), kept
in one place for the three drivers.
"""

from __future__ import annotations

import re
from typing import Final

from calibd.drivers.errors import SettingRejected

PATTERNS: Final = ("RGGB", "BGGR", "GRBG", "GBRG")
#: ASCOM BayerOffsetX/Y of each phase of a SensorType=RGGB sensor (ICameraV3: the offset of the
#: R G / G B matrix from pixel (0, 0), X to the right, Y down).
ASCOM_OFFSETS: Final = {"RGGB": (0, 0), "GRBG": (1, 0), "GBRG": (0, 1), "BGGR": (1, 1)}


def normalize(pattern: object) -> str | None:
    """``pattern`` as one of :data:`PATTERNS` (case and blanks ignored), else None."""
    if not isinstance(pattern, str):
        return None
    text = pattern.strip().upper()
    return text if text in PATTERNS else None


def shifted(pattern: str, dx: int, dy: int) -> str:
    """The pattern seen from an origin ``dx`` columns right and ``dy`` rows down (a subframe's
    start, ASCOM BayerOffsetX/Y, FITS XBAYROFF/YBAYROFF): ``shifted('RGGB', 1, 0) == 'GRBG'``.
    Raises ValueError for anything but a Bayer RGB phase."""
    p = normalize(pattern)
    if p is None:
        raise ValueError(f"not a Bayer pattern: {str(pattern)[:16]!r}")
    rows = (p[0:2], p[2:4])
    return "".join(rows[(r + dy) % 2][(c + dx) % 2] for r in (0, 1) for c in (0, 1))


# Read-out / capture-format names of debayered or 8-bit output (ZWO RGB24/Y8/RAW8, INDI_RGB, ...).
_NOT_RAW16 = re.compile(r"RGB|BGR|Y8|RAW8", re.IGNORECASE)


def refuse_debayered(mode: str, device: str) -> None:
    """Raise SettingRejected when read-out mode ``mode`` names a debayered (RGB, Y8) or 8-bit
    output: calibration frames are the sensor's raw 16-bit values, a mosaic on a colour sensor."""
    if _NOT_RAW16.search(mode):
        raise SettingRejected(
            f"read-out mode {mode[:40]!r} delivers debayered or 8-bit images; calibd takes raw "
            "16-bit mosaics only (RAW16), which it keeps undebayered in every frame and master",
            device=device)
