"""The simulated twilight sky: surface brightness follows the sun's altitude.

During civil and nautical twilight the zenith sky dims roughly exponentially with the sun's
depression (measured at the INT: a factor 2 every ~2.9 minutes, i.e. about 0.45 dex per degree of
sun altitude at mid latitudes). Here ``flux = flux_at_horizon * 10 ** (slope * altitude)`` for the
sun between ``night_altitude`` and the horizon, a floor at night (light pollution) and a cap in
daylight. The sun's altitude comes from an injected function (the core computes it with astropy,
offline), so the simulator and the scheduler agree on the sky; the simulated observatories use
:func:`sun_altitude_deg`, the same computation.

:class:`StarField` adds the stars a twilight flat picks up where the mount points (a layer of its
own, added in electrons on top of the sky's flux; the sensor's colour response is not its
business).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from calibd.drivers.clock import Clock
from calibd.drivers.pointing import Place
from calibd.drivers.pointing import sun_altaz

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

SunAltitude = Callable[[datetime], float]


def sun_altitude_deg(place: Place, when: datetime) -> float:
    """The sun's altitude in degrees (unrefracted) seen from ``place`` at ``when`` (UTC), by
    :func:`drivers.pointing.sun_altaz`; blocks a few milliseconds (astropy), never the network."""
    return float(sun_altaz(place, [when])[0][0])


@dataclass(eq=False)
class SimulatedSky:
    """Sky flux (e-/s per pixel through a clear filter) at the clock's current time."""

    clock: Clock
    sun_altitude_deg: SunAltitude
    _: KW_ONLY
    flux_at_horizon: float = 3.0e6
    slope_dex_per_deg: float = 0.45
    night_flux: float = 0.5
    max_flux: float = 3.0e7

    def flux(self, when: datetime | None = None) -> float:
        alt = self.sun_altitude_deg(when or self.clock.now())
        flux = self.flux_at_horizon * math.pow(10.0, self.slope_dex_per_deg * min(alt, 5.0))
        return min(self.max_flux, max(self.night_flux, flux))


@dataclass(eq=False)
class StarField:
    """Stars fixed on the sky, rendered into a frame for a pointing: a realistic density for
    the field of view (``stars_per_sq_deg`` down to ``faintest_mag``, counts growing ×2 per
    magnitude), Gaussian images (``psf_sigma_px``), trailed along the RA direction while the
    mount does not track, and moved by an offset of the pointing.

    The sky is cut into ``cell_deg`` cells (in Dec, and in RA·cos Dec); each cell's stars are
    drawn from a generator seeded by the cell, so the same sky comes back for the same pointing.
    Electrons are per star per second for a star of magnitude 10 (``e_per_s_mag10``), before
    the filter and the optics.
    """

    _: KW_ONLY
    arcsec_per_px: float = 2.0
    stars_per_sq_deg: float = 400.0
    brightest_mag: float = 8.0
    faintest_mag: float = 14.0
    e_per_s_mag10: float = 2.0e5
    psf_sigma_px: float = 1.2
    cell_deg: float = 0.25
    seed: int = 17
    # one star's normalised image and its pixel offsets (row, column), from psf_sigma_px
    _stamp: F32 = field(init=False, repr=False)
    _dy: npt.NDArray[np.int64] = field(init=False, repr=False)
    _dx: npt.NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        r = math.ceil(3 * self.psf_sigma_px)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
        stamp = np.exp(-(xx * xx + yy * yy) / np.float32(2 * self.psf_sigma_px ** 2))
        self._stamp = (stamp / stamp.sum()).astype(np.float32)
        self._dy, self._dx = yy.astype(np.int64).ravel(), xx.astype(np.int64).ravel()

    def stars_near(self, ra_deg: float, dec_deg: float, radius_deg: float
                   ) -> tuple[F64, F64, F64]:
        """(RA deg, Dec deg, magnitude) of the stars within about ``radius_deg``."""
        c = self.cell_deg
        ras: list[F64] = []
        decs: list[F64] = []
        mags: list[F64] = []
        lo, hi = math.floor((dec_deg - radius_deg) / c), math.floor((dec_deg + radius_deg) / c)
        for row in range(lo, hi + 1):
            band_dec = (row + 0.5) * c
            if abs(band_dec) >= 90.0:
                continue
            width = c / max(0.05, math.cos(math.radians(band_dec)))  # RA degrees of one cell
            span = radius_deg / max(0.05, math.cos(math.radians(dec_deg)))
            for col in range(math.floor((ra_deg - span) / width),
                             math.floor((ra_deg + span) / width) + 1):
                wrapped = col % max(1, round(360.0 / width))
                rng = np.random.default_rng([self.seed, row + 100_000, wrapped])
                n = int(rng.poisson(self.stars_per_sq_deg * c * c))
                ras.append((col + rng.random(n)) * width)
                decs.append((row + rng.random(n)) * c)
                # N(<m) grows x2 per magnitude: sample by inverting the cumulative count
                u = rng.random(n)
                lo_m, hi_m = self.brightest_mag, self.faintest_mag
                mags.append(lo_m + np.log2(1 + u * (2 ** (hi_m - lo_m) - 1)))
        if not ras:
            empty = np.zeros(0)
            return empty, empty, empty
        return np.concatenate(ras), np.concatenate(decs), np.concatenate(mags)

    def render(self, shape: tuple[int, int], ra_hours: float, dec_deg: float, exposure_s: float,
               drift_deg_per_s: float) -> F32:
        """Electrons per pixel collected in ``exposure_s`` by the stars around the pointing
        (``ra_hours``, ``dec_deg`` at the start), the field's RA growing ``drift_deg_per_s``
        (sidereal with tracking off, 0 while tracking): stars trail against the RA direction.
        """
        h, w = shape
        out = np.zeros((h, w), dtype=np.float32)
        if exposure_s <= 0:
            return out
        scale = self.arcsec_per_px / 3600.0
        half_diag = 0.5 * math.hypot(h, w) * scale
        trail_deg = drift_deg_per_s * exposure_s
        ra0 = ra_hours * 15.0
        ras, decs, mags = self.stars_near(ra0 + 0.5 * trail_deg, dec_deg,
                                          half_diag + 0.5 * trail_deg + 0.01)
        if ras.size == 0:
            return out
        cosd = math.cos(math.radians(dec_deg))
        dra = (ras - ra0 + 180.0) % 360.0 - 180.0
        x0 = dra * cosd / scale + (w - 1) / 2.0
        y0 = -(decs - dec_deg) / scale + (h - 1) / 2.0
        energy = self.e_per_s_mag10 * np.power(10.0, -0.4 * (mags - 10.0)) * exposure_s
        trail_px = trail_deg * cosd / scale
        steps = max(1, min(400, math.ceil(abs(trail_px) * 2)))
        frac = (np.arange(steps) + 0.5) / steps
        xs = (x0[:, None] - trail_px * frac[None, :]).ravel()
        ys = np.repeat(y0, steps)
        es = np.repeat(energy / steps, steps)
        keep = (xs > -5) & (xs < w + 4) & (ys > -5) & (ys < h + 4)
        xi = np.rint(xs[keep]).astype(np.int64)
        yi = np.rint(ys[keep]).astype(np.int64)
        es = es[keep]
        rr = yi[:, None] + self._dy[None, :]
        cc = xi[:, None] + self._dx[None, :]
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        weights = (es[:, None] * self._stamp.ravel()[None, :]).astype(np.float32)
        np.add.at(out, (rr[ok], cc[ok]), weights[ok])
        return out
