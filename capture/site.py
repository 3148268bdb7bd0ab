"""The observatory site and the sun: its altitude for a site, computed offline with astropy, and
twilight windows (used by the flats, the simulated sky, the scheduler and the CLI).

An observatory PC often has no internet: astropy's IERS auto-download is switched off and the
bundled tables are used (accuracy far better than the 0.1° that flats and schedules need; for
dates beyond the bundled tables astropy extrapolates and warns). Nothing is configured at import;
the first call does it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from functools import lru_cache
from typing import Literal

import numpy as np

from calibd.drivers.pointing import Place
from calibd.drivers.pointing import sun_altaz

GRID_S = 60  # altitudes are computed on a one-minute grid and interpolated
# The calendar ends at 9999-12-31: no search reaches past this (a clock set near the end of
# year 9999 simply finds no twilight).
LAST_TIME = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


@dataclass(frozen=True)
class Site:
    latitude_deg: float
    longitude_deg: float  # east positive
    elevation_m: float = 0.0


def sun_altitudes(site: Site, times: list[datetime]) -> np.ndarray:
    """Apparent (unrefracted) altitude of the sun's centre in degrees, for each UTC time.
    Blocks for a few milliseconds per call (astropy). Never touches the network."""
    return sun_altaz(_place(site), times)[0]


def sun_azimuth_deg(site: Site, when: datetime) -> float:
    """The sun's azimuth (degrees from North through East) at ``when``. Blocks a few
    milliseconds (astropy, offline)."""
    return float(sun_altaz(_place(site), [when])[1][0])


def _place(site: Site) -> Place:
    return Place(site.latitude_deg, site.longitude_deg, site.elevation_m)


@lru_cache(maxsize=4096)
def _grid_altitude(site: Site, minute: int) -> float:
    when = datetime.fromtimestamp(minute * GRID_S, tz=UTC)
    return float(sun_altitudes(site, [when])[0])


def sun_altitude_deg(site: Site, when: datetime) -> float:
    """Sun altitude at ``when`` (interpolated on a one-minute grid; error far below 0.01°)."""
    ts = when.timestamp()
    minute = math.floor(ts / GRID_S)
    a0 = _grid_altitude(site, minute)
    a1 = _grid_altitude(site, minute + 1)
    frac = ts / GRID_S - minute
    return a0 + (a1 - a0) * frac


def sun_rate_deg_per_s(site: Site, when: datetime) -> float:
    """d(altitude)/dt at ``when`` in degrees per second (negative while setting)."""
    return (sun_altitude_deg(site, when + timedelta(seconds=60))
            - sun_altitude_deg(site, when - timedelta(seconds=60))) / 120.0


Twilight = Literal["dusk", "dawn"]


@dataclass(frozen=True)
class Window:
    """One twilight window: ``kind``, and when the sun enters (``opens``) and leaves
    (``closes``) the band of altitudes asked for; datetimes in the time zone of the ``start``
    given to :func:`next_window`."""

    kind: Twilight
    opens: datetime
    closes: datetime


def crossings(site: Site, start: datetime, altitude: float, hours: float = 36.0
              ) -> list[tuple[datetime, bool]]:
    """Times after ``start`` (and before :data:`LAST_TIME`) when the sun crosses ``altitude``:
    (time, rising)."""
    step = 300
    room_s = (LAST_TIME - start).total_seconds()
    n = min(int(hours * 3600 / step), int(room_s // step)) + 1
    if n < 2:
        return []
    times = [start + timedelta(seconds=i * step) for i in range(n)]
    alts = sun_altitudes(site, times) - altitude
    out: list[tuple[datetime, bool]] = []
    for i in range(n - 1):
        a, b = alts[i], alts[i + 1]
        if a == 0 or (a < 0) != (b < 0):
            frac = 0.0 if a == 0 else a / (a - b)
            t = times[i] + timedelta(seconds=frac * step)
            out.append((t, bool(b > a)))
    return out


def next_window(site: Site, start: datetime, which: Literal["dusk", "dawn", "next"],
                bright_alt: float, dark_alt: float, hours: float = 36.0) -> Window | None:
    """The next dusk (sun setting from ``bright_alt`` to ``dark_alt``) or dawn (rising from
    ``dark_alt`` to ``bright_alt``) window that is still open after ``start``; None if there is
    none within ``hours`` (polar summer or winter)."""
    if bright_alt <= dark_alt:
        raise ValueError("the bright edge of the window must be above the dark edge")
    if start >= LAST_TIME:
        return None
    now_alt = sun_altitude_deg(site, start)
    rising_now = sun_rate_deg_per_s(site, start) > 0
    bright = crossings(site, start, bright_alt, hours)
    dark = crossings(site, start, dark_alt, hours)
    windows: list[Window] = []
    inside = dark_alt <= now_alt <= bright_alt
    if inside:
        if rising_now:
            end = next((t for t, rising in bright if rising), None)
            if end is not None:
                windows.append(Window("dawn", start, end))
        else:
            end = next((t for t, rising in dark if not rising), None)
            if end is not None:
                windows.append(Window("dusk", start, end))
    for t, rising in bright:
        if not rising:
            end = next((u for u, r in dark if not r and u > t), None)
            if end is not None:
                windows.append(Window("dusk", t, end))
    for t, rising in dark:
        if rising:
            end = next((u for u, r in bright if r and u > t), None)
            if end is not None:
                windows.append(Window("dawn", t, end))
    windows.sort(key=lambda w: w.opens)
    for w in windows:
        if which in ("next", w.kind):
            return w
    return None
