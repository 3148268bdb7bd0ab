"""Colour filter arrays (Bayer mosaics): pattern names, phase shifts and the four sub-planes.

A pattern is the FITS ``BAYERPAT`` string: the colours of the 2x2 cell at the image origin, row
by row, as calibd stores images (row 0 first, ``ROWORDER = 'TOP-DOWN'``). Only the four RGB
Bayer phases are supported; anything else is "not a mosaic calibd can split" and the callers
refuse it with their own message. Pure numpy, no I/O: used by the FITS writer, the flats (level
per channel) and the bad pixel maps (same-colour neighbours).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

PATTERNS: Final = ("RGGB", "BGGR", "GRBG", "GBRG")
#: Channel names in the order of :func:`channels` (the two greens told apart by their row).
CHANNEL_NAMES: Final = ("R", "G1", "G2", "B")


def normalize(pattern: object) -> str | None:
    """The pattern as one of :data:`PATTERNS`, or None when ``pattern`` is not a Bayer RGB
    phase (None, empty, ``CMYG``, garbage from a header). Never raises."""
    if not isinstance(pattern, str):
        return None
    text = pattern.strip().upper()
    return text if text in PATTERNS else None


def header_pattern(header: Mapping[str, object], height: int) -> str | None:
    """The pattern at row 0 of a FITS image's data as stored, from its ``BAYERPAT``, ``XBAYROFF``
    / ``YBAYROFF`` and ``ROWORDER`` (read the way Siril does: BAYERPAT is the top-left as
    displayed, so a ``BOTTOM-UP`` image of even ``height`` starts on the other row); None when
    the header names no Bayer phase (mono, CMYG). Never raises."""
    pattern = normalize(header.get("BAYERPAT"))
    if pattern is None:
        return None
    dx, dy = header.get("XBAYROFF", 0), header.get("YBAYROFF", 0)
    dx = dx if isinstance(dx, int) and not isinstance(dx, bool) else 0
    dy = dy if isinstance(dy, int) and not isinstance(dy, bool) else 0
    pattern = shifted(pattern, dx, dy)
    if str(header.get("ROWORDER", "TOP-DOWN")).strip().upper() == "BOTTOM-UP":
        pattern = flipped_rows(pattern, height)
    return pattern


def _require(pattern: str) -> str:
    found = normalize(pattern)
    if found is None:
        expected = ", ".join(PATTERNS)
        raise ValueError(f"not a Bayer pattern: {pattern[:16]!r} (expected one of {expected})")
    return found


def shifted(pattern: str, dx: int, dy: int) -> str:
    """The pattern seen from an origin moved by ``dx`` columns and ``dy`` rows (a subframe
    origin, ASCOM BayerOffsetX/Y, FITS XBAYROFF/YBAYROFF): ``shifted('RGGB', 1, 0) == 'GRBG'``.
    Raises ValueError for a pattern that is not a Bayer phase."""
    p = _require(pattern)
    rows = (p[0:2], p[2:4])
    return "".join(rows[(r + dy) % 2][(c + dx) % 2] for r in (0, 1) for c in (0, 1))


def flipped_rows(pattern: str, height: int) -> str:
    """The pattern at the origin after the image's rows are reversed (TOP-DOWN <-> BOTTOM-UP):
    the last row becomes row 0, so the phase changes only when ``height`` is even (what Siril
    does for ``ROWORDER``). Raises ValueError for a pattern that is not a Bayer phase."""
    return shifted(pattern, 0, (height - 1) % 2)


def channel_origins(pattern: str) -> dict[str, tuple[int, int]]:
    """(row, column) of each channel within the 2x2 cell: ``{'R': (0, 0), 'G1': (0, 1), ...}``
    for RGGB. ``G1`` is the green on the red row, ``G2`` the green on the blue row.
    Raises ValueError for a pattern that is not a Bayer phase."""
    p = _require(pattern)
    out: dict[str, tuple[int, int]] = {}
    red_row = 0 if "R" in p[0:2] else 1
    for i, colour in enumerate(p):
        r, c = divmod(i, 2)
        name = colour if colour != "G" else ("G1" if r == red_row else "G2")
        out[name] = (r, c)
    return {name: out[name] for name in CHANNEL_NAMES}


def channels(data: npt.NDArray[np.generic], pattern: str) -> dict[str, npt.NDArray[np.generic]]:
    """The four sub-planes of a mosaic as strided views (no copy), keyed by
    :data:`CHANNEL_NAMES`. Raises ValueError for a pattern that is not a Bayer phase or an
    image that is not 2-D."""
    if data.ndim != 2:
        raise ValueError(f"a mosaic is 2-D, got {data.ndim} dimensions")
    return {name: data[r::2, c::2] for name, (r, c) in channel_origins(pattern).items()}


def colour_map(pattern: str, shape: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Channel index (0..3 in :data:`CHANNEL_NAMES` order) of every pixel of an image of
    ``shape`` (rows, columns). Raises ValueError for a pattern that is not a Bayer phase."""
    out = np.empty(shape, dtype=np.uint8)
    for index, (r, c) in enumerate(channel_origins(pattern).values()):
        out[r::2, c::2] = index
    return out
