"""Alt/az <-> apparent RA/Dec of date (JNow) for a place on Earth, offline.

INDI mounts take and report JNow RA/Dec only (no alt/az property), so the INDI mount driver
converts here; the simulated mount and the core use the same functions, so everyone agrees on
where "alt 75°, az 90°" is. astropy's IERS auto-download is switched off on first use and its
bundled tables are used (far better than the 0.1° a flat field needs). JNow is astropy's TETE
frame (true equator, true equinox of date), topocentric; altitudes are unrefracted.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

_lock = threading.Lock()
_state = {"offline": False}
SIDEREAL_DEG_PER_S = 360.0 / 86164.0905  # the sky's turn rate, degrees per second


@dataclass(frozen=True)
class Place:
    """Where the mount stands: latitude, longitude (east positive) in degrees, height in m."""

    latitude_deg: float
    longitude_deg: float
    elevation_m: float = 0.0


def offline_astropy() -> None:
    """Keep astropy off the network (no IERS download; bundled tables, degraded accuracy
    ignored). Idempotent and thread-safe."""
    with _lock:
        if _state["offline"]:
            return
        from astropy.utils import iers

        iers.conf.auto_download = False
        iers.conf.auto_max_age = None
        iers.conf.iers_degraded_accuracy = "ignore"
        _state["offline"] = True


def _location(place: Place) -> Any:
    """astropy's EarthLocation of ``place`` (astropy kept offline)."""
    offline_astropy()
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation(lat=place.latitude_deg * u.deg, lon=place.longitude_deg * u.deg,
                         height=place.elevation_m * u.m)


def _frames(place: Place, when: datetime) -> tuple[Any, Any, Any]:
    location = _location(place)
    from astropy import units as u
    from astropy.coordinates import TETE
    from astropy.coordinates import AltAz
    from astropy.time import Time

    t = Time(when.astimezone(UTC).replace(tzinfo=None), scale="utc")
    return AltAz(obstime=t, location=location), TETE(obstime=t, location=location), u


def altaz_to_radec(place: Place, when: datetime, alt_deg: float, az_deg: float
                   ) -> tuple[float, float]:
    """(RA hours, Dec degrees) of date seen at ``alt_deg``/``az_deg`` (azimuth North through
    East) from ``place`` at ``when`` (UTC). Blocks a few milliseconds; no network."""
    from astropy.coordinates import SkyCoord

    altaz, tete, u = _frames(place, when)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coord: Any = SkyCoord(alt=alt_deg * u.deg, az=az_deg * u.deg, frame=altaz)
        eq: Any = coord.transform_to(tete)
    return float(eq.ra.hour) % 24.0, float(eq.dec.deg)


def load_frames(place: Place) -> None:
    """Convert once now, so that the first conversion that matters does not pay for loading
    astropy's frames and tables (seconds of real time under load: minutes of a fast simulated
    clock, enough to miss the start of a twilight). Blocks that long, once per process."""
    altaz_to_radec(place, datetime.now(UTC), 45.0, 180.0)


def radec_to_altaz(place: Place, when: datetime, ra_hours: float, dec_deg: float
                   ) -> tuple[float, float]:
    """(altitude, azimuth) in degrees of apparent RA/Dec of date, from ``place`` at ``when``."""
    from astropy.coordinates import SkyCoord

    altaz, tete, u = _frames(place, when)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coord: Any = SkyCoord(ra=ra_hours * u.hourangle, dec=dec_deg * u.deg, frame=tete)
        hor: Any = coord.transform_to(altaz)
    return float(hor.alt.deg), float(hor.az.deg) % 360.0


def sun_altaz(place: Place, times: Sequence[datetime]
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Apparent (unrefracted) altitude and azimuth (North through East) of the sun's centre in
    degrees, one of each per UTC time. Blocks a few milliseconds per call (astropy); never
    touches the network."""
    location = _location(place)
    from astropy.coordinates import AltAz
    from astropy.coordinates import get_sun
    from astropy.time import Time

    with warnings.catch_warnings():  # e.g. ERFA's "dubious year" far from the IERS tables
        warnings.simplefilter("ignore")
        when = Time([t.astimezone(UTC).replace(tzinfo=None) for t in times], scale="utc")
        hor: Any = get_sun(when).transform_to(AltAz(obstime=when, location=location))
        alt = np.atleast_1d(np.asarray(hor.alt.deg, dtype=np.float64))
        az = np.atleast_1d(np.asarray(hor.az.deg, dtype=np.float64)) % 360.0
    return alt, az


def separation_deg(alt1: float, az1: float, alt2: float, az2: float) -> float:
    """Great-circle angle between two alt/az directions, degrees."""
    a1, a2 = math.radians(alt1), math.radians(alt2)
    daz = math.radians(az1 - az2)
    cos = math.sin(a1) * math.sin(a2) + math.cos(a1) * math.cos(a2) * math.cos(daz)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))
