"""Check that frames belong together before they are combined into a master.

Frames that disagree with the others in shape, gain, offset, binning, read-out mode, exposure (not
for flats), set-point or filter are bad input: the error names the odd file and the keyword.
Unreadable files are left to the combination engine, which excludes them with a warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from astropy.io import fits

from calibd.capture.errors import InputError
from calibd.capture.errors import Problem
from calibd.capture.library.fitsio import UnreadableCard
from calibd.capture.library.fitsio import read_complete_header


class MasterInputError(InputError):
    """Frames given for one master do not match each other."""

    kind = "master input"


# BAYERPAT: a colour master from frames of two phases (or mosaic and mono-bin) mixes colours.
KEYS_ALL = ("NAXIS1", "NAXIS2", "GAIN", "OFFSET", "XBINNING", "YBINNING", "READOUTM", "BAYERPAT")
SETPOINT_TOLERANCE_C = 0.5


def check_consistent(paths: Sequence[Path], *, kind: str | None = None) -> list[fits.Header]:
    """Headers of the readable frames; raises MasterInputError naming the first odd file.
    ``kind`` ("flat" lets exposures differ) defaults to what IMAGETYP says."""
    headers: list[tuple[Path, fits.Header]] = []
    unreadable: list[Problem] = []
    for path in paths:
        try:
            headers.append((path, read_complete_header(path)))
        except UnreadableCard as err:  # its pixels may be fine: its settings are unknown
            unreadable.append(Problem(path, None, err.key, "cannot be read: the frame's "
                                      "settings cannot be checked"))
        except (OSError, ValueError):
            continue  # the engine excludes it with a warning
    if unreadable:
        raise MasterInputError(unreadable)
    if not headers:
        return []
    keys = list(KEYS_ALL)
    imagetyp = str(headers[0][1].get("IMAGETYP", "")).lower()
    flats = (kind == "flat") or (kind is None and "flat" in imagetyp and "dark" not in imagetyp)
    keys.append("FILTER" if flats else "EXPTIME")
    problems: list[Problem] = []
    for key in keys:
        values = [_value(h, key) for _, h in headers]
        if all(v is None for v in values):
            continue
        majority, _ = Counter(values).most_common(1)[0]
        for (path, _), value in zip(headers, values, strict=True):
            if value != majority:
                problems.append(Problem(path, None, key, f"{key} = {value!r} but the other "
                                        f"frames have {majority!r}"))
                break
    temps = [(p, h.get("SET-TEMP", h.get("CCD-TEMP"))) for p, h in headers]
    known = sorted(float(t) for _, t in temps if isinstance(t, int | float))
    if known:
        middle = known[len(known) // 2]
        for path, t in temps:
            if isinstance(t, int | float) and abs(float(t) - middle) > SETPOINT_TOLERANCE_C:
                problems.append(Problem(path, None, "SET-TEMP", f"set-point {t} °C but the "
                                        f"other frames are at {middle} °C"))
                break
    if problems:
        raise MasterInputError(problems)
    return [h for _, h in headers]


def _value(header: fits.Header, key: str) -> Any:
    value = header.get(key)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return value.strip()
    return value
