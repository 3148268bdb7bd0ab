"""The simulated twilight sky: surface brightness follows the sun's altitude.

During civil and nautical twilight the zenith sky dims roughly exponentially with the sun's
depression (measured at the INT: a factor 2 every ~2.9 minutes, i.e. about 0.45 dex per degree of
sun altitude at mid latitudes). Here ``flux = flux_at_horizon * 10 ** (slope * altitude)`` for the
sun between ``night_altitude`` and the horizon, a floor at night (light pollution) and a cap in
daylight. The sun's altitude comes from an injected function (the core computes it with astropy,
offline), so the simulator and the scheduler agree on the sky.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from calibd.drivers.clock import Clock

SunAltitude = Callable[[datetime], float]


class SimulatedSky:
    """Sky flux (e-/s per pixel through a clear filter) at the clock's current time."""

    def __init__(self, clock: Clock, sun_altitude_deg: SunAltitude, *,
                 flux_at_horizon: float = 3.0e6, slope_dex_per_deg: float = 0.45,
                 night_flux: float = 0.5, max_flux: float = 3.0e7) -> None:
        self._clock = clock
        self._sun = sun_altitude_deg
        self.flux_at_horizon = flux_at_horizon
        self.slope = slope_dex_per_deg
        self.night_flux = night_flux
        self.max_flux = max_flux

    def flux(self, when: datetime | None = None) -> float:
        alt = self._sun(when or self._clock.now())
        flux = self.flux_at_horizon * math.pow(10.0, self.slope * min(alt, 5.0))
        return min(self.max_flux, max(self.night_flux, flux))
